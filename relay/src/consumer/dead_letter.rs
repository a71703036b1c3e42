//! The dead-letter topic: a record that cannot be applied (a data error) is
//! re-published there untouched, with `dlq_*` headers saying why and where
//! it came from, and only then does its partition move on. A dead-letter
//! publish that fails is retried by the partition's worker (the offset does
//! not move); a failure that only an operator can cure (topic missing with
//! creation off, record too large, not authorised) is logged and counted,
//! and the producer is not replaced for it.

use crate::context::RelayContext;
use crate::kafka::{Fault, classify};
use crate::producer::Outgoing;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use std::sync::Arc;
use std::time::Duration;

/// Header names added to a dead-lettered record (removed again on replay).
pub const REASON_HEADER: &str = "dlq_reason";
pub const TOPIC_HEADER: &str = "dlq_original_topic";
pub const PARTITION_HEADER: &str = "dlq_original_partition";
pub const OFFSET_HEADER: &str = "dlq_original_offset";

/// The dead-letter publish failed; the record stays where it is.
#[derive(Debug, thiserror::Error)]
#[error("cannot publish to the dead-letter topic {topic}: {source}")]
pub struct DeadLetterError {
    pub topic: String,
    pub fault: Fault,
    #[source]
    pub source: KafkaError,
}

impl DeadLetterError {
    /// A bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self.fault {
            Fault::Broker => "dead_letter_broker",
            Fault::Producer => "dead_letter_producer",
            Fault::MissingTopic => "dead_letter_missing_topic",
            Fault::Record => "dead_letter_rejected",
            Fault::Unauthorized => "dead_letter_unauthorized",
        }
    }
}

/// Publishes records to the dead-letter topic.
#[derive(Clone)]
pub struct DeadLetters {
    ctx: Arc<RelayContext>,
    topic: String,
}

impl DeadLetters {
    pub fn new(ctx: Arc<RelayContext>) -> Self {
        let topic = ctx.settings.kafka.topic(&ctx.settings.consumer.dlq_topic);
        DeadLetters { ctx, topic }
    }

    /// Sends `msg` (key, value and headers untouched) with the error headers.
    pub async fn send(&self, msg: &OwnedMessage, reason: &str) -> Result<(), DeadLetterError> {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = msg.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        for (key, value) in [
            (REASON_HEADER, reason),
            (TOPIC_HEADER, msg.topic()),
            (PARTITION_HEADER, partition.as_str()),
            (OFFSET_HEADER, offset.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let record = Outgoing {
            topic: &self.topic,
            key: msg.key(),
            payload: msg.payload(),
            headers,
        };
        let (generation, producer) = self.ctx.producers.get();
        let timeout = self.ctx.settings.kafka.message_timeout;
        match producer.send(record, timeout).await {
            Ok(_) => {
                metrics::counter!("consumer_dead_lettered_total", "topic" => msg.topic().to_owned())
                    .increment(1);
                tracing::warn!(
                    reason,
                    dlq_topic = %self.topic,
                    "Message sent to the dead-letter topic."
                );
                Ok(())
            }
            Err(source) => {
                let fault = classify(&source);
                let err = DeadLetterError {
                    topic: self.topic.clone(),
                    fault,
                    source,
                };
                match fault {
                    Fault::Producer => self.ctx.producers.replace(generation),
                    Fault::MissingTopic if self.ctx.settings.kafka.create_topics => {
                        self.ctx.ensure_topics().await;
                    }
                    Fault::Broker => {}
                    Fault::MissingTopic | Fault::Record | Fault::Unauthorized => {
                        // Needs an operator: say so loudly, retry slowly.
                        metrics::counter!("consumer_dead_letter_failures_total",
                            "reason" => err.reason())
                        .increment(1);
                        tracing::error!(error = %err, reason = err.reason(),
                            "The dead-letter topic refuses the record; the partition waits until this is fixed.");
                    }
                }
                Err(err)
            }
        }
    }
}

/// How long until a dead-letter publish is tried again.
pub fn retry_ceiling(err: &DeadLetterError) -> Duration {
    match err.fault {
        Fault::Broker | Fault::Producer => Duration::from_secs(10),
        Fault::MissingTopic | Fault::Record | Fault::Unauthorized => Duration::from_secs(60),
    }
}
