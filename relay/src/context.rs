//! The state that the lease coordinator, the shard workers, the consumer and
//! the health server share. Startup builds it; nothing here starts tasks.

use crate::backoff::{Repeats, Throttle};
use crate::config::RelaySettings;
use crate::consumer::health::ConsumerHealth;
use crate::kafka::create_topics;
use crate::outlets::PublishMeters;
use crate::producers::Producers;
use order_shared::db::live::Announcer;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// State shared by the coordinator, the shard workers and the health server.
#[derive(Debug)]
pub struct RelayContext {
    pub settings: RelaySettings,
    /// Live-update hints of the changes the consumer applies, for the API
    /// replicas; none when the consumer is off (nothing to announce, so no
    /// read of the watched changes every second either).
    pub hints: Option<Announcer>,
    pub producers: Producers,
    /// Every topic the relay produces to or consumes from (prefixed).
    pub topics: Vec<String>,
    pub session_ok: AtomicBool,
    pub broker_ok: AtomicBool,
    /// Which consumer partitions are retrying, and whether it runs at all.
    pub consumer: ConsumerHealth,
    /// Topics are (re-)created at most every two seconds.
    pub topics_checked: Throttle,
    /// Failed deletes of published rows are logged at most every 10 s.
    pub delete_warnings: Throttle,
    /// Failed publishing is logged once per kind of failure every 10 s
    /// for all the relay's shards (an outage fails them all at once).
    pub publish_warnings: Repeats,
    /// Whether sends on this relay's shards keep failing.
    pub publishing: PublishHealth,
    /// Publishing's metric handles and topic names, made once.
    pub meters: PublishMeters,
}

impl RelayContext {
    /// Registers metric handles: install the recorder first.
    pub fn new(
        settings: RelaySettings,
        producers: Producers,
        topics: Vec<String>,
        hints: Option<Announcer>,
    ) -> Self {
        RelayContext {
            meters: PublishMeters::new(&settings.kafka.topic_prefix),
            hints,
            settings,
            producers,
            topics,
            session_ok: AtomicBool::new(false),
            broker_ok: AtomicBool::new(true),
            consumer: ConsumerHealth::default(),
            topics_checked: Throttle::new(Duration::from_secs(2)),
            delete_warnings: Throttle::new(Duration::from_secs(10)),
            publish_warnings: Repeats::new(Duration::from_secs(10)),
            publishing: PublishHealth::default(),
        }
    }

    /// Re-creates the topics (when allowed), at most once every two seconds
    /// whatever the number of shards asking.
    pub async fn ensure_topics(&self) {
        if !self.settings.kafka.create_topics {
            return;
        }
        if !self.topics_checked.due() {
            return;
        }
        if let Err(e) = create_topics(&self.settings.kafka, &self.topics).await {
            tracing::warn!(error = %e, "Re-creating topics failed.");
        }
    }
}

/// How long this relay's sends have failed without a single acknowledgement
/// in between, and whether it gave its shards back because of it
/// (`OUTBOX_PUBLISH_STALL_SECS`). Only shards that have rows to publish
/// count: a shard that is empty, or given back, is not failing.
#[derive(Debug, Default)]
pub struct PublishHealth {
    state: Mutex<PublishState>,
    stalled: AtomicBool,
}

#[derive(Debug, Default)]
struct PublishState {
    last_success: Option<Instant>,
    /// Shards whose last step failed on the broker's side, since when.
    failing: HashMap<i32, Instant>,
}

impl PublishHealth {
    fn state(&self) -> std::sync::MutexGuard<'_, PublishState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The broker acknowledged a send of `shard`: the producer works.
    pub fn succeeded(&self, shard: i32) {
        let mut state = self.state();
        state.last_success = Some(Instant::now());
        state.failing.remove(&shard);
    }

    /// A send of `shard` failed for a reason on the broker's side.
    pub fn failed(&self, shard: i32) {
        self.state()
            .failing
            .entry(shard)
            .or_insert_with(Instant::now);
    }

    /// `shard` has nothing to publish, or is no longer ours.
    pub fn settled(&self, shard: i32) {
        self.state().failing.remove(&shard);
    }

    /// How many shards' last step failed on the broker's side.
    pub fn failing_shards(&self) -> usize {
        self.state().failing.len()
    }

    /// For how long sends have failed without any acknowledgement since.
    pub fn failing_for(&self) -> Option<Duration> {
        let state = self.state();
        let first = state.failing.values().min()?;
        let since = match state.last_success {
            Some(ok) if ok > *first => ok,
            _ => *first,
        };
        Some(since.elapsed())
    }

    /// The relay gave its shards back until its producer works again.
    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::SeqCst)
    }

    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
        self.state().failing.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::PublishHealth;

    #[test]
    fn only_shards_with_failing_sends_count_and_a_success_resets_the_clock() {
        let health = PublishHealth::default();
        assert!(health.failing_for().is_none());
        health.failed(1);
        health.failed(2);
        assert!(health.failing_for().is_some());
        health.settled(1);
        assert!(health.failing_for().is_some(), "shard 2 still fails");
        std::thread::sleep(std::time::Duration::from_millis(30));
        health.succeeded(3);
        let since_success = health.failing_for().unwrap();
        assert!(since_success < std::time::Duration::from_millis(30));
        health.succeeded(2);
        assert!(health.failing_for().is_none());
        health.failed(4);
        health.set_stalled(true);
        assert!(health.is_stalled() && health.failing_for().is_none());
    }
}
