//! Kafka client errors in the log without a flood. While the broker is
//! away, librdkafka reports every failed connection attempt through each
//! client's error callback (`AllBrokersDown`, `BrokerTransportFailure`),
//! and the consumer's poll returns the same errors: logged as they came, a
//! relay wrote about 20 lines a second for as long as an outage lasted.
//! librdkafka's own log lines at warning and above (a `FAIL` line per
//! failed connection of each client's broker threads, and of each new
//! producer) come the same way. Each kind is now logged the first time,
//! then at most once per [`WINDOW`], with the number of lines left out
//! since the last one.

use crate::backoff::Repeats;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The least time between two lines of one kind.
pub const WINDOW: Duration = Duration::from_secs(30);

/// One table for the whole process: a replaced producer keeps its
/// predecessor's count. Kinds are librdkafka's error codes and log-line
/// kinds ([`log_kind`]); the table forgets them all rather than grow past
/// a cap (`Repeats`).
static KAFKA: LazyLock<Repeats> = LazyLock::new(|| Repeats::new(WINDOW));

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

/// A librdkafka log line's kind: its facility, the librdkafka thread that
/// leads it (`[thrd:host:port/id]`, one per broker connection) as it is,
/// and the rest of its text without digits, at most 120 characters. So the
/// failed connections of one broker thread (`... failed: Connection
/// refused (after 0ms in state CONNECT)`) are one kind however their
/// counts and times read, while two brokers, or two different warnings
/// (at start-up, say), are two.
fn log_kind(fac: &str, message: &str) -> String {
    let (thread, rest) = match message.strip_prefix("[thrd:") {
        Some(after) => after.split_once(']').unwrap_or((after, "")),
        None => ("", message),
    };
    let thread: String = thread.chars().take(120).collect();
    let text: String = rest
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(120)
        .collect();
    format!("log:{fac}:{thread}:{text}")
}

/// A client's log callback (`ClientContext::log`) of the producers and the
/// consumer: as rdkafka's default, but a line at warning or above goes
/// through the window by its kind (`log_kind`).
pub fn client_log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    use RDKafkaLogLevel::*;
    if matches!(level, Notice | Info | Debug) {
        match level {
            Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}"),
            _ => tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}"),
        }
        return;
    }
    let kind = log_kind(fac, message);
    let Some(left_out) = KAFKA.admit(&kind, Instant::now()) else {
        return;
    };
    match level {
        Warning => tracing::warn!(target: "librdkafka", left_out, "librdkafka: {fac} {message}"),
        _ => tracing::error!(target: "librdkafka", left_out, "librdkafka: {fac} {message}"),
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
    use super::log_kind;

    #[test]
    fn a_log_line_kind_ignores_counts_and_times_but_not_the_text() {
        let refused = |ms: u32, port: u32| {
            format!(
                "[thrd:127.0.0.1:{port}/1]: 127.0.0.1:{port}/1: Connect to ipv4#127.0.0.1:{port} failed: Connection refused (after {ms}ms in state CONNECT)"
            )
        };
        let first = log_kind("FAIL", &refused(0, 9092));
        assert_eq!(first, log_kind("FAIL", &refused(17, 9092)));
        assert_ne!(first, log_kind("FAIL", &refused(0, 9093)), "another broker");
        assert_ne!(first, log_kind("BROKERFAIL", &refused(0, 9092)));
        let thread = log_kind(
            "FAIL",
            "[thrd:GroupCoordinator]: GroupCoordinator: Connect failed",
        );
        assert_ne!(first, thread);
        let config = |p: &str| {
            format!(
                "[thrd:app]: Configuration property {p} is a consumer property and will be ignored by this producer instance"
            )
        };
        assert_ne!(
            log_kind("CONFWARN", &config("group.id")),
            log_kind("CONFWARN", &config("auto.offset.reset")),
            "two different warnings are both logged"
        );
        assert!(log_kind("FAIL", &"x".repeat(10_000)).len() < 140, "bounded");
        let long_thread = format!("[thrd:{}]: x", "h".repeat(10_000));
        assert!(log_kind("FAIL", &long_thread).len() < 260, "bounded");
    }
}
