//! W3C trace context: the one parser of a `traceparent` value, used for
//! HTTP requests (api) and Kafka record headers (relay) alike.

use std::fmt;

/// The header (HTTP) and record header (Kafka) that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A well-formed `traceparent`: `version-traceid-spanid-flags` in lower-
/// or upper-case hex, 2-32-16-2 digits. Anything else is dropped, never
/// forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent(String);

impl TraceParent {
    /// The trace context in `value`, if it is well formed.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let mut parts = value.split('-');
        let valid = [2, 32, 16, 2].iter().all(|len| {
            parts
                .next()
                .is_some_and(|p| p.len() == *len && p.bytes().all(|b| b.is_ascii_hexdigit()))
        }) && parts.next().is_none();
        valid.then(|| TraceParent(value.to_owned()))
    }

    /// The 32-digit trace id, for log lines.
    pub fn trace_id(&self) -> &str {
        &self.0[3..35]
    }

    /// The whole value, as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn well_formed_values_are_kept() {
        let tp = TraceParent::parse(GOOD).expect("valid");
        assert_eq!(tp.as_str(), GOOD);
        assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn anything_else_is_dropped() {
        for bad in [
            "",
            "00-xyz-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-ff",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }
}
