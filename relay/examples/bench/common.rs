//! Helpers shared by the bench tool's modes.

use order_relay::config::KafkaSettings;
use std::time::Duration;

pub fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].clone())
        .unwrap_or_else(|| default.to_owned())
}

pub fn kafka(brokers: &str) -> KafkaSettings {
    KafkaSettings {
        brokers: brokers.to_owned(),
        topic_prefix: String::new(),
        create_topics: true,
        topic_partitions: 6,
        topic_replication: 1,
        message_timeout: Duration::from_secs(30),
        message_max_bytes: 1_000_000,
        linger: Duration::from_millis(5),
        backlog_linger: Duration::from_millis(5),
        debug: None,
    }
}

/// The `q` quantile of sorted values.
pub fn pick(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}
