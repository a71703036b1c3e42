//! The flags of the relay's operator commands (`snapshot`, `dlq replay`):
//! one walk over `--flag value` pairs, and the value parsers they share.

use anyhow::Context;
use chrono::{DateTime, Utc};

/// Walks the flags after a command: each flag, then the value it takes.
pub struct Flags<'a, 'b> {
    rest: std::slice::Iter<'a, &'b str>,
}

impl<'a, 'b> Flags<'a, 'b> {
    pub fn new(flags: &'a [&'b str]) -> Self {
        Flags { rest: flags.iter() }
    }

    /// The next flag.
    pub fn next_flag(&mut self) -> Option<&'b str> {
        self.rest.next().copied()
    }

    /// The value after `flag`; when there is none, the error names the flag.
    pub fn value(&mut self, flag: &str) -> anyhow::Result<&'b str> {
        self.rest
            .next()
            .copied()
            .with_context(|| format!("{flag} takes a value"))
    }
}

/// The value of `--since`: an RFC 3339 time.
pub fn since(value: &str) -> anyhow::Result<DateTime<Utc>> {
    let since = DateTime::parse_from_rfc3339(value)
        .context("--since takes an RFC 3339 time, e.g. 2026-11-26T10:00:00Z")?;
    Ok(since.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_values_are_walked_in_order_and_a_missing_value_is_named() {
        let mut flags = Flags::new(&["--since", "2026-11-26T10:00:00Z", "--limit"]);
        assert_eq!(flags.next_flag(), Some("--since"));
        let at = since(flags.value("--since").unwrap()).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-26T10:00:00+00:00");
        assert_eq!(flags.next_flag(), Some("--limit"));
        let err = flags.value("--limit").unwrap_err().to_string();
        assert_eq!(err, "--limit takes a value");
        assert_eq!(flags.next_flag(), None);
        assert!(
            since("yesterday")
                .unwrap_err()
                .to_string()
                .contains("RFC 3339")
        );
    }
}
