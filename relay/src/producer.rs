//! The relay's producer: librdkafka's idempotent producer, whose every
//! acknowledgement is checked before the relay may delete a row.
//!
//! librdkafka takes a `DuplicateSequenceNumber` answer as "delivered"
//! (`rdkafka_request.c`: "previous send succeeded but was not
//! acknowledged") and gives the records of that batch the broker's
//! base offset -1, then 0, 1, ... (`rd_kafka_msgq_set_metadata`). A
//! broker that restarted empty (Tansu's memory engine, DESIGN section 8)
//! hands out producer ids from 1 again, so another producer may hold the
//! id this one still uses and be ahead of its sequence numbers: then
//! nothing of the batch was written. Such an ack, and every later ack of
//! the same producer, fail here as `DuplicateSequenceNumber` (a producer
//! fault: the producer is replaced and the rows are sent again). On a real Kafka that answer means the
//! batch was written before; sending it again costs a duplicate, which
//! consumers drop by `ce_id`.

use futures_channel::oneshot;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A record's acknowledgement: `Ok` once the broker wrote it. Not tokio's
/// oneshot: polling that spends the task's cooperative budget, and
/// `deliver_all` polls a whole batch of acks at every wake-up (with tokio's,
/// a 100,000-row drain ran 15 % slower).
pub type Ack = oneshot::Receiver<Result<(), KafkaError>>;

/// The error an ack without a written offset fails with.
pub const NOT_WRITTEN: KafkaError =
    KafkaError::MessageProduction(RDKafkaErrorCode::DuplicateSequenceNumber);

/// Whether a producer's acks still mean "written". The first ack at a
/// negative offset spoils the producer: that ack and every later one fail
/// (the rest of that batch carries offsets 0, 1, ...; a later batch on the
/// same partition may be written while this one is not, which would put
/// an order's events out of order). Such a producer is replaced, and what
/// it had in flight is sent again by the next one: duplicates, never a
/// loss or a reordering.
#[derive(Debug, Default)]
pub struct AckCheck {
    spoiled: AtomicBool,
}

impl AckCheck {
    /// Whether a record acked at `offset` was written. Called from the
    /// one thread that serves delivery reports, in their order.
    pub fn written(&self, offset: i64) -> bool {
        if self.spoiled.load(Ordering::Relaxed) {
            return false;
        }
        if offset < 0 {
            self.spoiled.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Whether an ack without an offset has been seen.
    pub fn spoiled(&self) -> bool {
        self.spoiled.load(Ordering::Relaxed)
    }
}

/// Resolves each record's [`Ack`] from librdkafka's delivery reports (one
/// polling thread, in the order librdkafka reports them).
#[derive(Debug, Default)]
pub struct Checked {
    check: AckCheck,
}

impl ClientContext for Checked {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka_log::client_error(&error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::kafka_log::client_log(level, fac, message);
    }
}

impl ProducerContext for Checked {
    type DeliveryOpaque = Box<oneshot::Sender<Result<(), KafkaError>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(msg) => {
                let first = !self.check.spoiled();
                if self.check.written(msg.offset()) {
                    Ok(())
                } else {
                    if first {
                        tracing::warn!(
                            topic = msg.topic(),
                            partition = msg.partition(),
                            "The broker acknowledged a batch without writing it (duplicate sequence number); the producer is replaced and what it had in flight is sent again."
                        );
                    }
                    Err(NOT_WRITTEN)
                }
            }
            Err((err, _)) => Err(err.clone()),
        };
        let _ = ack.send(outcome);
    }
}

/// One producer (cheap to clone; the last clone stops its polling thread).
#[derive(Clone)]
pub struct CheckedProducer {
    inner: Arc<ThreadedProducer<Checked>>,
}

/// A record to send: topic, key and payload are borrowed until the send
/// call returns (librdkafka copies them); the headers are handed over.
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub headers: OwnedHeaders,
}

impl CheckedProducer {
    pub fn create(config: &ClientConfig) -> KafkaResult<Self> {
        let inner: ThreadedProducer<Checked> = config.create_with_context(Checked::default())?;
        Ok(CheckedProducer {
            inner: Arc::new(inner),
        })
    }

    /// Hands a record to librdkafka; fails at once when its queue is full.
    pub fn send_result(&self, record: Outgoing<'_>) -> Result<Ack, KafkaError> {
        let (tx, rx) = oneshot::channel();
        let mut base = BaseRecord::<[u8], [u8], _>::with_opaque_to(record.topic, Box::new(tx))
            .headers(record.headers);
        base.key = record.key;
        base.payload = record.payload;
        self.inner.send(base).map(|()| rx).map_err(|(err, _)| err)
    }

    /// Sends a record, retrying for up to `queue_timeout` while librdkafka's
    /// queue is full, and waits for its ack.
    pub async fn send(
        &self,
        record: Outgoing<'_>,
        queue_timeout: Duration,
    ) -> Result<(), KafkaError> {
        let start = Instant::now();
        loop {
            let attempt = Outgoing {
                headers: record.headers.clone(),
                ..record
            };
            match self.send_result(attempt) {
                Ok(ack) => return ack.await.unwrap_or(Err(KafkaError::Canceled)),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))
                    if start.elapsed() < queue_timeout =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// The underlying client (metadata, flush).
    pub fn producer(&self) -> &ThreadedProducer<Checked> {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::AckCheck;

    #[test]
    fn after_an_ack_without_an_offset_no_ack_of_the_producer_counts() {
        let check = AckCheck::default();
        assert!(check.written(41), "a plain ack");
        assert!(check.written(0), "offset 0 of a fresh partition");
        assert!(!check.spoiled());
        // The batch answered DuplicateSequenceNumber: -1, then 0, 1, ...
        assert!(!check.written(-1));
        assert!(check.spoiled());
        assert!(!check.written(0));
        assert!(!check.written(1));
        // Any later ack of this producer, whatever its offset.
        assert!(!check.written(57));
    }

    #[test]
    fn an_ack_with_no_offset_at_all_spoils_the_producer_too() {
        let check = AckCheck::default();
        // RD_KAFKA_OFFSET_INVALID.
        assert!(!check.written(-1001));
        assert!(!check.written(5));
    }
}
