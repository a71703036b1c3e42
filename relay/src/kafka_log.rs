//! Kafka client errors in the log without a flood. While the broker is
//! away, librdkafka reports every failed connection attempt through each
//! client's error callback (`AllBrokersDown`, `BrokerTransportFailure`),
//! and the consumer's poll returns the same errors: logged as they came, a
//! relay wrote about 20 lines a second for as long as an outage lasted.
//! Each kind is now logged the first time, then at most once per
//! [`WINDOW`], with the number of lines left out since the last one.

use rdkafka::error::KafkaError;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The least time between two lines of one kind.
pub const WINDOW: Duration = Duration::from_secs(30);

/// When each kind of line was last written, and how many were left out
/// since.
#[derive(Debug, Default)]
pub struct Repeats {
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug)]
struct Seen {
    logged_at: Instant,
    left_out: u64,
}

impl Repeats {
    /// `Some(n)` when a line of `kind` is due at `now` (`n` lines of that
    /// kind were left out since the last one), `None` to leave it out.
    pub fn admit(&self, kind: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get_mut(kind) {
            None => {
                seen.insert(
                    kind.to_owned(),
                    Seen {
                        logged_at: now,
                        left_out: 0,
                    },
                );
                Some(0)
            }
            Some(s) if now.saturating_duration_since(s.logged_at) >= WINDOW => {
                s.logged_at = now;
                Some(std::mem::take(&mut s.left_out))
            }
            Some(s) => {
                s.left_out += 1;
                None
            }
        }
    }
}

/// One table for the whole process: a replaced producer keeps its
/// predecessor's count. Kinds are librdkafka's error codes, so it stays
/// small.
static KAFKA: LazyLock<Repeats> = LazyLock::new(Repeats::default);

fn kind(side: &str, error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => format!("{side}:{code:?}"),
        None => format!("{side}:{error}"),
    }
}

/// A client's error callback (`ClientContext::error`) of the producers and
/// the consumer.
pub fn client_error(error: &KafkaError, reason: &str) {
    if let Some(left_out) = KAFKA.admit(&kind("client", error), Instant::now()) {
        tracing::error!(
            error = %error,
            reason,
            left_out,
            "Kafka client error (the same error at most once per 30 s; left_out counts the lines left out since the last)."
        );
    }
}

/// An error returned by the consumer's poll.
pub fn consumer_error(error: &KafkaError) {
    if let Some(left_out) = KAFKA.admit(&kind("consumer", error), Instant::now()) {
        tracing::warn!(
            error = %error,
            left_out,
            "Kafka consumer error (the same error at most once per 30 s; left_out counts the lines left out since the last)."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_logged_first_then_once_per_window_with_the_count_left_out() {
        let repeats = Repeats::default();
        let t0 = Instant::now();
        assert_eq!(repeats.admit("client:AllBrokersDown", t0), Some(0));
        for i in 1..=40 {
            let at = t0 + Duration::from_millis(50 * i);
            assert_eq!(repeats.admit("client:AllBrokersDown", at), None);
        }
        // Another kind is not held back by the first.
        assert_eq!(
            repeats.admit("client:BrokerTransportFailure", t0 + Duration::from_secs(1)),
            Some(0)
        );
        assert_eq!(
            repeats.admit(
                "client:AllBrokersDown",
                t0 + WINDOW - Duration::from_millis(1)
            ),
            None
        );
        assert_eq!(
            repeats.admit("client:AllBrokersDown", t0 + WINDOW),
            Some(41)
        );
        assert_eq!(
            repeats.admit(
                "client:AllBrokersDown",
                t0 + WINDOW + Duration::from_secs(1)
            ),
            None
        );
        assert_eq!(
            repeats.admit("client:AllBrokersDown", t0 + 3 * WINDOW),
            Some(1),
            "a quiet spell: the next line is due at once"
        );
    }
}
