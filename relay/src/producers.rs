//! The relay's producers: the one every batch goes through, and the
//! backlog producer for full batches; replaced together (see DESIGN
//! section 8 on producer ids).

use crate::config::KafkaSettings;
use crate::kafka::producer_config;
use crate::producer::CheckedProducer;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The current producers and their generation. A producer that hit a fatal
/// or producer-id error, or lived through an outage, is replaced by a new
/// one: the broker may have forgotten its producer id. Both producers of a
/// generation go together.
///
/// Full batches (a relay behind its outbox) go through a producer of their
/// own with a longer `linger.ms` (`KAFKA_BACKLOG_LINGER_MS`): larger record
/// batches cost the broker a third to a half less per row in a drain,
/// while a row that is not behind still waits only `KAFKA_LINGER_MS`. Order per order holds across
/// the two: an order's rows are in one batch at a time, and its next batch
/// is claimed only after every ack of the one before
/// (`handoff::ClaimSpec::exclude`).
pub struct Producers {
    config: ClientConfig,
    /// The backlog producer's settings; `None` when its linger is the
    /// other's (then one producer sends everything).
    backlog_config: Option<ClientConfig>,
    generation: AtomicU64,
    current: Mutex<Current>,
}

struct Current {
    generation: u64,
    producer: CheckedProducer,
    /// Made at the first full batch of the generation, closed after
    /// [`BACKLOG_IDLE`] without one.
    backlog: Option<Backlog>,
}

struct Backlog {
    producer: CheckedProducer,
    /// When the last full batch was handed to it.
    used: Instant,
}

/// How long the backlog producer stays unused before it is closed: idle,
/// its threads cost about 1 % of a core (`docs/benchmarks.md`,
/// twenty-third pass).
pub const BACKLOG_IDLE: Duration = Duration::from_secs(60);

/// Drops producers off the async runtime: librdkafka's destroy purges,
/// flushes for up to 500 ms and joins its threads.
fn close(producers: Vec<CheckedProducer>) {
    if producers.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(producers))),
        Err(_) => drop(producers),
    }
}

impl std::fmt::Debug for Producers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producers")
            .field("generation", &self.generation)
            .finish()
    }
}

impl Producers {
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let config = producer_config(settings);
        let backlog_config = (settings.backlog_linger != settings.linger).then(|| {
            let mut backlog = config.clone();
            backlog.set("linger.ms", settings.backlog_linger.as_millis().to_string());
            backlog
        });
        let producer = CheckedProducer::create(&config)?;
        Ok(Producers {
            config,
            backlog_config,
            generation: AtomicU64::new(0),
            current: Mutex::new(Current {
                generation: 0,
                producer,
                backlog: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The producer to use, with its generation.
    pub fn get(&self) -> (u64, CheckedProducer) {
        let guard = self.lock();
        (guard.generation, guard.producer.clone())
    }

    /// The producer for a full batch, with its generation: the backlog
    /// producer (made on first use); `None` when there is none (then
    /// [`get`](Self::get)'s producer sends everything).
    pub fn for_backlog(&self) -> Option<(u64, CheckedProducer)> {
        let config = self.backlog_config.as_ref()?;
        let mut guard = self.lock();
        let generation = guard.generation;
        let used = Instant::now();
        if let Some(backlog) = guard.backlog.as_mut() {
            backlog.used = used;
            return Some((generation, backlog.producer.clone()));
        }
        match CheckedProducer::create(config) {
            Ok(producer) => {
                guard.backlog = Some(Backlog {
                    producer: producer.clone(),
                    used,
                });
                Some((generation, producer))
            }
            Err(err) => {
                tracing::error!(error = %err, "Cannot create the Kafka backlog producer; full batches use the other one.");
                None
            }
        }
    }

    /// Every producer of the current generation (to flush at shutdown).
    pub fn all(&self) -> Vec<CheckedProducer> {
        let guard = self.lock();
        std::iter::once(guard.producer.clone())
            .chain(guard.backlog.as_ref().map(|b| b.producer.clone()))
            .collect()
    }

    /// Closes the backlog producer once it went `idle` without a full batch
    /// and has nothing in flight (`rd_kafka_outq_len`: messages, requests
    /// and events not yet served); the next full batch makes a new one.
    /// Returns whether it closed it.
    pub fn retire_backlog(&self, idle: Duration) -> bool {
        use rdkafka::producer::Producer;
        let mut guard = self.lock();
        let retire = guard.backlog.as_ref().is_some_and(|b| {
            b.used.elapsed() >= idle && b.producer.producer().in_flight_count() == 0
        });
        if !retire {
            return false;
        }
        close(
            guard
                .backlog
                .take()
                .map(|b| b.producer)
                .into_iter()
                .collect(),
        );
        true
    }

    /// Replaces the producers of `generation` (once, however many callers
    /// ask); the backlog producer is made again at the next full batch.
    pub fn replace(&self, generation: u64) {
        let mut guard = self.lock();
        if guard.generation != generation {
            return;
        }
        match CheckedProducer::create(&self.config) {
            Ok(producer) => {
                let next = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                let old = std::mem::replace(
                    &mut *guard,
                    Current {
                        generation: next,
                        producer,
                        backlog: None,
                    },
                );
                drop(guard);
                close(
                    std::iter::once(old.producer)
                        .chain(old.backlog.map(|b| b.producer))
                        .collect(),
                );
                metrics::counter!("relay_producer_replacements_total").increment(1);
                tracing::info!(generation = next, "Replaced the Kafka producer.");
            }
            Err(err) => tracing::error!(error = %err, "Cannot create a Kafka producer."),
        }
    }
}

impl Producers {
    /// Whether the broker answers a metadata request of the current
    /// producer within two seconds (readiness, and the end of a stall).
    pub async fn broker_answers(&self) -> Result<(), String> {
        let (_, producer) = self.get();
        let probe = tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            producer
                .producer()
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .map(|_| ())
        })
        .await;
        match probe {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("unreachable: {e}")),
            Err(e) => Err(format!("probe failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::producer::Producer;

    fn settings(linger_ms: u64, backlog_ms: u64) -> KafkaSettings {
        KafkaSettings {
            brokers: "127.0.0.1:1".into(),
            topic_prefix: String::new(),
            create_topics: false,
            topic_partitions: 1,
            topic_replication: 1,
            message_timeout: Duration::from_secs(5),
            message_max_bytes: 1_000_000,
            linger: Duration::from_millis(linger_ms),
            backlog_linger: Duration::from_millis(backlog_ms),
            debug: None,
        }
    }

    fn client(p: &CheckedProducer) -> *mut rdkafka::types::RDKafka {
        p.producer().client().native_ptr()
    }

    #[test]
    fn one_producer_when_both_lingers_are_the_same() {
        let producers = Producers::new(&settings(5, 5)).unwrap();
        assert!(producers.for_backlog().is_none());
        assert_eq!(producers.all().len(), 1);
    }

    #[test]
    fn the_backlog_producer_is_made_once_per_generation_and_replaced_with_the_other() {
        let producers = Producers::new(&settings(5, 20)).unwrap();
        assert_eq!(producers.all().len(), 1, "made at the first full batch");
        let (generation, backlog) = producers.for_backlog().unwrap();
        let (same, main) = producers.get();
        assert_eq!(generation, same);
        assert_ne!(client(&backlog), client(&main));
        assert_eq!(
            client(&producers.for_backlog().unwrap().1),
            client(&backlog)
        );
        assert_eq!(producers.all().len(), 2);

        producers.replace(generation);
        producers.replace(generation); // a second caller of the same fault
        let (next, renewed) = producers.for_backlog().unwrap();
        assert_eq!(next, generation + 1);
        assert_ne!(client(&renewed), client(&backlog));
        assert_ne!(client(&producers.get().1), client(&main));
        assert_eq!(producers.get().0, next);
    }

    #[test]
    fn an_unused_backlog_producer_is_closed_and_made_again_when_needed() {
        let producers = Producers::new(&settings(5, 20)).unwrap();
        assert!(!producers.retire_backlog(Duration::ZERO), "none made yet");
        let (_, first) = producers.for_backlog().unwrap();
        assert!(
            !producers.retire_backlog(Duration::from_secs(60)),
            "just used"
        );
        // librdkafka counts its unserved events (here: connection refused)
        // as in flight until its polling thread serves them.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !producers.retire_backlog(Duration::ZERO) {
            assert!(Instant::now() < deadline, "never closed");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(producers.all().len(), 1);
        let (_, second) = producers.for_backlog().unwrap();
        assert_ne!(client(&second), client(&first));
    }
}
