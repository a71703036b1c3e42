//! `order-relay` settings, from the environment (DESIGN section 7).

use order_shared::config::{
    CommonSettings, ConfigError, Env, flag, millis, optional, parse_in_range, parse_or, secs,
};
use order_shared::domain::payloads::{
    DEAD_LETTER_TOPIC, INVENTORY_RESERVED_TOPIC, PAYMENT_AUTHORIZED_TOPIC, PAYMENT_FAILED_TOPIC,
};
use std::time::Duration;

/// `OUTBOX_MAX_ROWS_IN_FLIGHT` unless set: measured in `docs/benchmarks.md`
/// (change 13 chose 4096 for memory; change 43 raised it once the relay's
/// peak RSS fell: a drain about 20 % faster at 40-41 MB).
pub const DEFAULT_MAX_ROWS_IN_FLIGHT: usize = 8_000;

/// `OUTBOX_BATCHES_IN_FLIGHT` unless set: enough that a shard is not left
/// out of claims while a slow broker acks (measured in `docs/benchmarks.md`,
/// eighth pass); the rows in them stay within the shard's share of
/// `OUTBOX_MAX_ROWS_IN_FLIGHT` whatever this is.
pub const DEFAULT_BATCHES_IN_FLIGHT: usize = 16;

/// What to do when a row is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkedPolicy {
    /// Stop the shard at the parked row until it is replayed (keeps order).
    Stop,
    /// Publish the shard's later rows anyway (availability over order).
    Skip,
}

/// Kafka client settings.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic_prefix: String,
    pub create_topics: bool,
    pub topic_partitions: i32,
    pub topic_replication: i32,
    /// librdkafka `message.timeout.ms`: how long a send may take before it fails.
    pub message_timeout: Duration,
    /// librdkafka `message.max.bytes`.
    pub message_max_bytes: usize,
    /// librdkafka `linger.ms`: how long the producer gathers a batch.
    pub linger: Duration,
    /// `linger.ms` of the backlog producer, which sends the full batches of
    /// a relay that is behind (`KAFKA_BACKLOG_LINGER_MS`); none when it
    /// equals `linger` (one producer for all).
    pub backlog_linger: Duration,
    /// librdkafka `debug` contexts (`KAFKA_DEBUG`, e.g. `cgrp,topic`), for
    /// diagnosing the client; its lines are logged at the `rdkafka` target.
    pub debug: Option<String>,
}

impl KafkaSettings {
    pub fn topic(&self, base: &str) -> String {
        format!("{}{base}", self.topic_prefix)
    }
}

/// The inbound side: consumer group, topics, dead letters, inbox retention.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub enabled: bool,
    pub group_id: String,
    /// `group.instance.id` (static membership): a replica restarted under
    /// the same name takes its partitions back without a full rebalance.
    pub instance_id: String,
    /// Base names (before the prefix).
    pub payment_authorized_topic: String,
    pub payment_failed_topic: String,
    pub inventory_reserved_topic: String,
    pub dlq_topic: String,
    pub inbox_retention: Duration,
    pub session_timeout: Duration,
    /// How long a revoked partition's worker may take to finish the
    /// message in hand before it is aborted (`CONSUMER_REVOKE_TIMEOUT_MS`).
    pub revoke_timeout: Duration,
    /// A partition retrying one message longer than this makes the relay
    /// not ready (`CONSUMER_STUCK_SECS`).
    pub stuck_after: Duration,
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "order-relay".to_owned())
}

impl ConsumerSettings {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let topic = |var: &str, default: &str| {
            let name = optional(env, var).unwrap_or_else(|| default.to_owned());
            if name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                Ok(name)
            } else {
                Err(ConfigError::new(
                    var,
                    "may hold only letters, digits, '.', '_' and '-'",
                ))
            }
        };
        Ok(ConsumerSettings {
            enabled: flag(env, "CONSUMER_ENABLED", true)?,
            group_id: optional(env, "KAFKA_CONSUMER_GROUP")
                .unwrap_or_else(|| "order-service".into()),
            instance_id: optional(env, "RELAY_INSTANCE_ID").unwrap_or_else(host_name),
            payment_authorized_topic: topic("TOPIC_PAYMENT_AUTHORIZED", PAYMENT_AUTHORIZED_TOPIC)?,
            payment_failed_topic: topic("TOPIC_PAYMENT_FAILED", PAYMENT_FAILED_TOPIC)?,
            inventory_reserved_topic: topic("TOPIC_INVENTORY_RESERVED", INVENTORY_RESERVED_TOPIC)?,
            dlq_topic: topic("KAFKA_DLQ_TOPIC", DEAD_LETTER_TOPIC)?,
            inbox_retention: Duration::from_secs(
                3600 * parse_in_range(env, "INBOX_RETENTION_HOURS", 168_u64, 1..=24 * 365)?,
            ),
            session_timeout: millis(env, "KAFKA_SESSION_TIMEOUT_MS", 10_000, 1_000..=300_000)?,
            revoke_timeout: millis(env, "CONSUMER_REVOKE_TIMEOUT_MS", 10_000, 100..=300_000)?,
            stuck_after: secs(env, "CONSUMER_STUCK_SECS", 60, 1..=86_400)?,
        })
    }
}

/// Everything `order-relay serve` needs.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub common: CommonSettings,
    pub kafka: KafkaSettings,
    pub consumer: ConsumerSettings,
    pub host: String,
    pub port: u16,
    pub max_attempts: i32,
    pub parked_policy: ParkedPolicy,
    pub batch_size: i64,
    /// Batches of one shard sent and waiting for their acks at once
    /// (`OUTBOX_BATCHES_IN_FLIGHT`).
    pub batches_in_flight: usize,
    /// Rows claimed and not yet settled in the whole relay, split evenly
    /// among its shards (`OUTBOX_MAX_ROWS_IN_FLIGHT`): what bounds its memory.
    pub max_rows_in_flight: usize,
    /// How often one query claims new rows for the owned idle shards.
    pub poll_interval: Duration,
    /// How often leases are rebalanced among live relays.
    pub rebalance_interval: Duration,
    /// NOTIFY with the outbox rows the consumer writes (`OUTBOX_NOTIFY`).
    pub outbox_notify: bool,
    /// Client-side timeout of every lease-session query; the server ends a
    /// session idle for twice as long (`OUTBOX_SESSION_TIMEOUT_MS`).
    pub session_timeout: Duration,
    /// After this long without an acknowledged send, the relay gives its
    /// shards back until its producer works (`OUTBOX_PUBLISH_STALL_SECS`).
    pub publish_stall: Duration,
}

impl RelaySettings {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let parked_policy = match optional(env, "OUTBOX_PARKED_POLICY").as_deref() {
            None | Some("stop") => ParkedPolicy::Stop,
            Some("skip") => ParkedPolicy::Skip,
            Some(other) => {
                return Err(ConfigError::new(
                    "OUTBOX_PARKED_POLICY",
                    format!("expected stop or skip, got {other:?}"),
                ));
            }
        };
        let topic_prefix = optional(env, "KAFKA_TOPIC_PREFIX").unwrap_or_default();
        if !topic_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(ConfigError::new(
                "KAFKA_TOPIC_PREFIX",
                "may hold only letters, digits, '.', '_' and '-'",
            ));
        }
        Ok(RelaySettings {
            common: CommonSettings::from_env(env)?,
            kafka: KafkaSettings {
                brokers: optional(env, "KAFKA_BROKERS").unwrap_or_else(|| "127.0.0.1:9092".into()),
                topic_prefix,
                create_topics: flag(env, "KAFKA_CREATE_TOPICS", false)?,
                topic_partitions: parse_in_range(env, "KAFKA_TOPIC_PARTITIONS", 6, 1..=10_000)?,
                topic_replication: parse_in_range(env, "KAFKA_TOPIC_REPLICATION", 1, 1..=10)?,
                message_timeout: millis(env, "KAFKA_MESSAGE_TIMEOUT_MS", 10_000, 1_000..=600_000)?,
                message_max_bytes: parse_in_range(
                    env,
                    "KAFKA_MESSAGE_MAX_BYTES",
                    1_000_000,
                    1_000..=100_000_000,
                )?,
                linger: millis(env, "KAFKA_LINGER_MS", 5, 0..=1_000)?,
                backlog_linger: millis(env, "KAFKA_BACKLOG_LINGER_MS", 20, 0..=1_000)?,
                debug: optional(env, "KAFKA_DEBUG"),
            },
            consumer: ConsumerSettings::from_env(env)?,
            host: optional(env, "RELAY_HOST").unwrap_or_else(|| "0.0.0.0".into()),
            port: parse_or(env, "RELAY_PORT", 3004)?,
            max_attempts: parse_in_range(env, "OUTBOX_MAX_ATTEMPTS", 10, 1..=1_000_000)?,
            parked_policy,
            batch_size: parse_in_range(env, "OUTBOX_BATCH_SIZE", 500, 1..=10_000)?,
            batches_in_flight: parse_in_range(
                env,
                "OUTBOX_BATCHES_IN_FLIGHT",
                DEFAULT_BATCHES_IN_FLIGHT,
                1..=64,
            )?,
            max_rows_in_flight: parse_in_range(
                env,
                "OUTBOX_MAX_ROWS_IN_FLIGHT",
                DEFAULT_MAX_ROWS_IN_FLIGHT,
                1..=10_000_000,
            )?,
            poll_interval: millis(env, "OUTBOX_POLL_INTERVAL_MS", 10, 1..=60_000)?,
            rebalance_interval: millis(env, "OUTBOX_REBALANCE_INTERVAL_MS", 1_000, 100..=60_000)?,
            outbox_notify: flag(env, "OUTBOX_NOTIFY", false)?,
            session_timeout: millis(env, "OUTBOX_SESSION_TIMEOUT_MS", 5_000, 1_000..=600_000)?,
            publish_stall: secs(env, "OUTBOX_PUBLISH_STALL_SECS", 60, 1..=86_400)?,
        })
    }
}

/// The relay's async runtime threads (`RELAY_WORKER_THREADS`, default 1).
/// The relay waits on PostgreSQL and the broker; its work comes in small
/// pieces (a batch of a row or two per shard), and with a second thread
/// most of them woke the other thread too: one thread cost about a fifth
/// less CPU per published event (docs/benchmarks.md, tenth pass). The
/// consumer's polling and librdkafka have threads of their own.
pub fn worker_threads(env: &impl Env) -> Result<usize, ConfigError> {
    parse_in_range(env, "RELAY_WORKER_THREADS", 1, 1..=256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_shared::config::from_pairs as env;

    #[test]
    fn defaults() {
        let s = RelaySettings::from_env(&env(&[])).unwrap();
        assert_eq!(s.port, 3004);
        assert_eq!(s.parked_policy, ParkedPolicy::Stop);
        assert_eq!(s.kafka.topic("order.placed"), "order.placed");
        assert!(!s.kafka.create_topics);
        assert_eq!(s.session_timeout, Duration::from_secs(5));
        assert_eq!(s.publish_stall, Duration::from_secs(60));
        assert_eq!(s.batches_in_flight, DEFAULT_BATCHES_IN_FLIGHT);
        assert_eq!(s.max_rows_in_flight, DEFAULT_MAX_ROWS_IN_FLIGHT);
        assert_eq!(s.kafka.linger, Duration::from_millis(5));
        assert_eq!(s.kafka.backlog_linger, Duration::from_millis(20));
    }

    #[test]
    fn prefix_applies_and_bad_values_name_the_variable() {
        let s = RelaySettings::from_env(&env(&[("KAFKA_TOPIC_PREFIX", "staging.")])).unwrap();
        assert_eq!(s.kafka.topic("order.placed"), "staging.order.placed");
        for (var, value) in [
            ("OUTBOX_PARKED_POLICY", "ignore"),
            ("OUTBOX_MAX_ATTEMPTS", "0"),
            ("KAFKA_CREATE_TOPICS", "perhaps"),
            ("KAFKA_TOPIC_PREFIX", "bad prefix"),
            ("RELAY_PORT", "x"),
            ("TOPIC_PAYMENT_FAILED", "pay ments"),
            ("INBOX_RETENTION_HOURS", "0"),
            ("CONSUMER_REVOKE_TIMEOUT_MS", "5"),
            ("CONSUMER_STUCK_SECS", "never"),
            ("OUTBOX_SESSION_TIMEOUT_MS", "500"),
            ("OUTBOX_PUBLISH_STALL_SECS", "0"),
            ("OUTBOX_BATCHES_IN_FLIGHT", "0"),
            ("OUTBOX_MAX_ROWS_IN_FLIGHT", "0"),
            ("KAFKA_BACKLOG_LINGER_MS", "1001"),
        ] {
            let err = RelaySettings::from_env(&env(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var);
        }
    }

    #[test]
    fn one_runtime_thread_unless_set() {
        assert_eq!(worker_threads(&env(&[])).unwrap(), 1);
        assert_eq!(
            worker_threads(&env(&[("RELAY_WORKER_THREADS", "4")])).unwrap(),
            4
        );
        for bad in ["0", "many", "-1", "257"] {
            let err = worker_threads(&env(&[("RELAY_WORKER_THREADS", bad)])).unwrap_err();
            assert_eq!(err.var, "RELAY_WORKER_THREADS");
        }
    }
}
