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
//! nothing of the batch was written. Such acks fail here as
//! `DuplicateSequenceNumber` (a producer fault: the producer is replaced
//! and the rows are sent again). On a real Kafka that answer means the
//! batch was written before; sending it again costs a duplicate, which
//! consumers drop by `ce_id`.

use futures_channel::oneshot;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A record's acknowledgement: `Ok` once the broker wrote it. Not tokio's
/// oneshot: polling that spends the task's cooperative budget, and
/// `deliver_all` polls a whole batch of acks at every wake-up (with tokio's,
/// a 100,000-row drain ran 15 % slower).
pub type Ack = oneshot::Receiver<Result<(), KafkaError>>;

/// The error an ack without a written offset fails with.
pub const NOT_WRITTEN: KafkaError =
    KafkaError::MessageProduction(RDKafkaErrorCode::DuplicateSequenceNumber);

/// Which acks carry the offsets of a batch answered with
/// `DuplicateSequenceNumber`: per topic and partition, the offset the next
/// record of such a batch would get. A real ack at exactly that offset is
/// also taken as not written: a duplicate, never a loss.
#[derive(Debug, Default)]
pub struct AckCheck {
    runs: Vec<(String, i32, i64)>,
}

impl AckCheck {
    /// Whether a record acked at `offset` was written.
    pub fn written(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        if offset >= 0 && self.runs.is_empty() {
            return true;
        }
        let run = self
            .runs
            .iter()
            .position(|(t, p, _)| *p == partition && t == topic);
        match run {
            _ if offset < 0 => {
                let next = offset.saturating_add(1).max(0);
                match run {
                    Some(i) => self.runs[i].2 = next,
                    None => self.runs.push((topic.to_owned(), partition, next)),
                }
                false
            }
            Some(i) if self.runs[i].2 == offset => {
                self.runs[i].2 += 1;
                false
            }
            Some(i) => {
                self.runs.swap_remove(i);
                true
            }
            None => true,
        }
    }
}

/// Resolves each record's [`Ack`] from librdkafka's delivery reports (one
/// polling thread, in the order librdkafka reports them).
#[derive(Debug, Default)]
pub struct Checked {
    check: Mutex<AckCheck>,
}

impl ClientContext for Checked {}

impl ProducerContext for Checked {
    type DeliveryOpaque = Box<oneshot::Sender<Result<(), KafkaError>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(msg) => {
                let mut check = self.check.lock().unwrap_or_else(|e| e.into_inner());
                if check.written(msg.topic(), msg.partition(), msg.offset()) {
                    Ok(())
                } else {
                    // Once per batch: its first record carries the -1.
                    if msg.offset() < 0 {
                        tracing::warn!(
                            topic = msg.topic(),
                            partition = msg.partition(),
                            "The broker acknowledged a batch without writing it (duplicate sequence number); its records will be sent again."
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
    fn a_duplicate_sequence_batch_is_not_written_and_later_acks_are() {
        let mut check = AckCheck::default();
        assert!(check.written("t", 0, 41), "a plain ack");
        // The batch answered with DuplicateSequenceNumber: -1, 0, 1.
        assert!(!check.written("t", 0, -1));
        assert!(!check.written("t", 0, 0));
        // Another partition and another topic are untouched meanwhile.
        assert!(check.written("t", 1, 0));
        assert!(check.written("u", 0, 1));
        assert!(!check.written("t", 0, 1));
        // The next real ack ends the run.
        assert!(check.written("t", 0, 57));
        assert!(check.written("t", 0, 2), "no run any more");
        // Two runs at once, on two partitions.
        assert!(!check.written("t", 0, -1));
        assert!(!check.written("t", 1, -1));
        assert!(!check.written("t", 1, 0));
        assert!(!check.written("t", 0, 0));
        assert!(check.written("t", 1, 9));
        assert!(!check.written("t", 0, 1));
    }

    #[test]
    fn an_ack_without_any_offset_is_not_written() {
        let mut check = AckCheck::default();
        // RD_KAFKA_OFFSET_INVALID (-1001): no run follows from it.
        assert!(!check.written("t", 0, -1001));
        assert!(check.written("t", 0, 5));
    }
}
