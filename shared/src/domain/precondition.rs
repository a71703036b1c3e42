//! `If-Match` on a change: the version the client last saw. The order's
//! entity tag is its version (`ETag: "3"`); a change that names a stale
//! version is refused before anything is written.

/// A parsed `If-Match` header (RFC 9110 section 13.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current version.
    Any,
    /// A list of strong entity tags; the change goes ahead when the order's
    /// version is one of them. Weak tags (`W/"3"`) never match, as the RFC
    /// asks of `If-Match`, and tags that are not a version match nothing.
    Versions(Vec<i64>),
}

/// The longest header read; an order's tag is a few digits.
pub const MAX_LEN: usize = 1024;

impl IfMatch {
    /// Parses the header's value: `*`, or a comma-separated list of
    /// `"tag"` / `W/"tag"` where a tag is visible ASCII other than `"`.
    /// A value that is neither matches no version (so the change is refused
    /// with the current version, as for a stale tag): RFC 9110 has no error
    /// for it, and the client learns the tag to send.
    pub fn parse(value: &str) -> Self {
        Self::parse_list(value).unwrap_or(IfMatch::Versions(Vec::new()))
    }

    fn parse_list(value: &str) -> Option<Self> {
        let ows = |c: char| c == ' ' || c == '\t';
        let value = value.trim_matches(ows);
        if value == "*" {
            return Some(IfMatch::Any);
        }
        if value.len() > MAX_LEN {
            return None;
        }
        let mut versions = Vec::new();
        let mut rest = value;
        loop {
            let (weak, quoted) = match rest.strip_prefix("W/") {
                Some(after) => (true, after),
                None => (false, rest),
            };
            let body = quoted.strip_prefix('"')?;
            let end = body.find('"')?;
            let opaque = &body[..end];
            if !opaque
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
            {
                return None;
            }
            if !weak && let Some(v) = opaque.parse::<i64>().ok().filter(|v| *v >= 1) {
                versions.push(v);
            }
            let after = body[end + 1..].trim_start_matches(ows);
            if after.is_empty() {
                return Some(IfMatch::Versions(versions));
            }
            rest = after.strip_prefix(',')?.trim_start_matches(ows);
        }
    }

    /// Whether an order at `version` satisfies the condition.
    pub fn allows(&self, version: i64) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Versions(list) => list.contains(&version),
        }
    }
}

/// The entity tag of an order at `version`: `"3"`.
pub fn entity_tag(version: i64) -> String {
    format!("\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_any_version() {
        assert_eq!(IfMatch::parse(" * "), IfMatch::Any);
        assert!(IfMatch::Any.allows(1));
        assert!(IfMatch::Any.allows(99));
    }

    #[test]
    fn one_tag_matches_its_version_only() {
        let m = IfMatch::parse("\"3\"");
        assert!(m.allows(3));
        assert!(!m.allows(2));
        assert!(!m.allows(4));
    }

    #[test]
    fn a_list_matches_any_of_its_tags() {
        let m = IfMatch::parse(" \"2\" ,\t\"5\"");
        assert_eq!(m, IfMatch::Versions(vec![2, 5]));
        assert!(m.allows(5) && m.allows(2) && !m.allows(3));
        // A comma may sit inside a tag.
        assert_eq!(IfMatch::parse("\"a,b\", \"3\""), IfMatch::Versions(vec![3]));
    }

    #[test]
    fn weak_and_foreign_tags_never_match() {
        for other in ["W/\"3\"", "\"abc\"", "\"0\"", "\"-1\"", "\"\""] {
            assert_eq!(
                IfMatch::parse(other),
                IfMatch::Versions(vec![]),
                "{other:?}"
            );
        }
    }

    #[test]
    fn malformed_headers_match_no_version() {
        let long = format!("\"{}\"", "1".repeat(2000));
        for bad in [
            "",
            "3",
            "\"3",
            "3\"",
            "\"3\" \"4\"",
            "\"a b\"",
            "W/3",
            "**",
            "\"3\",,",
            "\"é\"",
            &long,
        ] {
            let parsed = IfMatch::parse(bad);
            assert_eq!(parsed, IfMatch::Versions(vec![]), "{bad:?}");
            assert!(!parsed.allows(3), "{bad:?}");
        }
    }

    #[test]
    fn entity_tag_quotes_the_version() {
        assert_eq!(entity_tag(7), "\"7\"");
        assert!(IfMatch::parse(&entity_tag(7)).allows(7));
    }
}
