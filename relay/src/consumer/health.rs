//! Per-partition consumer health: which partitions are retrying a message,
//! since when and why. Readiness turns not-ready only when one has been
//! stuck past `CONSUMER_STUCK_SECS`, and names it; the gauge
//! `consumer_partition_retrying_seconds` feeds the alert.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Retrying {
    since: Instant,
    reason: &'static str,
}

/// Shared by the partition workers (writers) and `/health/ready` (reader).
#[derive(Debug)]
pub struct ConsumerHealth {
    /// False when the consumer could not be created or subscribed.
    running: AtomicBool,
    retrying: Mutex<HashMap<(String, i32), Retrying>>,
}

impl Default for ConsumerHealth {
    fn default() -> Self {
        ConsumerHealth {
            running: AtomicBool::new(true),
            retrying: Mutex::new(HashMap::new()),
        }
    }
}

fn gauge(topic: &str, partition: i32, seconds: f64) {
    metrics::gauge!("consumer_partition_retrying_seconds", "topic" => topic.to_owned(),
        "partition" => partition.to_string())
    .set(seconds);
}

impl ConsumerHealth {
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), Retrying>> {
        self.retrying.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The partition's message in hand has been failing since `since`.
    pub fn retrying(&self, topic: &str, partition: i32, reason: &'static str, since: Instant) {
        gauge(topic, partition, since.elapsed().as_secs_f64());
        self.map()
            .insert((topic.to_owned(), partition), Retrying { since, reason });
    }

    /// The partition moves again (or is no longer ours).
    pub fn recovered(&self, topic: &str, partition: i32) {
        if self.map().remove(&(topic.to_owned(), partition)).is_some() {
            gauge(topic, partition, 0.0);
        }
    }

    /// Partitions retrying for longer than `threshold`, described for humans,
    /// e.g. `payment.authorized[2] retrying for 75 s (deadlock)`.
    pub fn stuck(&self, threshold: Duration) -> Vec<String> {
        let mut stuck: Vec<String> = self
            .map()
            .iter()
            .filter(|(_, r)| r.since.elapsed() >= threshold)
            .map(|((topic, partition), r)| {
                format!(
                    "{topic}[{partition}] retrying for {} s ({})",
                    r.since.elapsed().as_secs(),
                    r.reason
                )
            })
            .collect();
        stuck.sort();
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partitions_past_the_threshold_are_stuck() {
        let health = ConsumerHealth::default();
        let long_ago = Instant::now() - Duration::from_secs(90);
        health.retrying("payment.authorized", 2, "deadlock", long_ago);
        health.retrying("payment.failed", 0, "read_only", Instant::now());
        let stuck = health.stuck(Duration::from_secs(60));
        assert_eq!(stuck.len(), 1, "{stuck:?}");
        assert!(stuck[0].starts_with("payment.authorized[2] retrying for 9"));
        assert!(stuck[0].ends_with("(deadlock)"));
        health.recovered("payment.authorized", 2);
        assert!(health.stuck(Duration::from_secs(60)).is_empty());
        assert_eq!(health.stuck(Duration::ZERO).len(), 1);
    }
}
