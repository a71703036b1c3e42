//! Kafka -> orders: consumes payment and inventory events in the group
//! `KAFKA_CONSUMER_GROUP`, one task per partition (partitions in parallel,
//! in order within one). Each message is applied in one database
//! transaction with its idempotency key; only after the commit is its offset
//! stored (auto-committed later). Bad messages go to the dead-letter topic;
//! transient failures are retried without moving the offset.

use crate::kafka::client_config;
use crate::publisher::Backoff;
use crate::startup::RelayContext;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use order_shared::StoreError;
use order_shared::db::inbox::{InboundContext, InboundEvent, apply_inbound};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The inbound topics' meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    PaymentAuthorized,
    PaymentFailed,
    InventoryReserved,
}

fn text(payload: &Value, field: &str) -> Option<String> {
    let pick = |v: &Value| match v.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    pick(payload).or_else(|| payload.get("data").and_then(pick))
}

/// Parses a message into its idempotency key and event, or the reason it
/// must be dead-lettered. Fields may sit at the top level or under `data`.
pub fn parse_message(
    kind: TopicKind,
    ce_id: Option<&str>,
    payload: Option<&[u8]>,
) -> Result<(String, InboundEvent), String> {
    let bytes = payload
        .filter(|p| !p.is_empty())
        .ok_or("empty message value")?;
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("value is not JSON: {e}"))?;
    if !value.is_object() {
        return Err("value is not a JSON object".to_owned());
    }
    let key = ce_id
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .or_else(|| text(&value, "eventId"))
        .ok_or("no idempotency key: neither a ce_id header nor an eventId")?;
    if key.len() > 200 {
        return Err("idempotency key longer than 200 characters".to_owned());
    }
    let order_id = text(&value, "orderId")
        .ok_or("no orderId")?
        .parse::<Uuid>()
        .map_err(|_| "orderId is not a UUID".to_owned())?;
    let event = match kind {
        TopicKind::PaymentAuthorized => InboundEvent::PaymentAuthorized {
            order_id,
            payment_id: text(&value, "paymentId"),
        },
        TopicKind::PaymentFailed => InboundEvent::PaymentFailed {
            order_id,
            reason: text(&value, "reason").map(|r| r.chars().take(500).collect()),
        },
        TopicKind::InventoryReserved => InboundEvent::InventoryReserved {
            order_id,
            reservation_id: text(&value, "reservationId"),
            reserved_at: match text(&value, "reservedAt") {
                None => None,
                Some(t) => Some(
                    DateTime::parse_from_rfc3339(&t)
                        .map_err(|_| "reservedAt is not an RFC 3339 time".to_owned())?
                        .with_timezone(&Utc),
                ),
            },
        },
    };
    Ok((key, event))
}

fn header_text<'a>(msg: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    msg.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// A failure that a retry may cure; the offset does not move.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transient(String);

struct Worker {
    ctx: Arc<RelayContext>,
    pool: Pool,
    consumer: Arc<StreamConsumer>,
    kinds: Arc<HashMap<String, TopicKind>>,
    dlq_topic: String,
}

impl Worker {
    /// Sends the message, untouched, with error headers to the DLQ.
    async fn dead_letter(&self, msg: &OwnedMessage, reason: &str) -> Result<(), Transient> {
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
        headers = headers
            .insert(Header {
                key: "dlq_reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "dlq_original_topic",
                value: Some(msg.topic()),
            })
            .insert(Header {
                key: "dlq_original_partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "dlq_original_offset",
                value: Some(offset.as_str()),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.dlq_topic).headers(headers);
        if let Some(key) = msg.key() {
            record = record.key(key);
        }
        if let Some(payload) = msg.payload() {
            record = record.payload(payload);
        }
        let (generation, producer) = self.ctx.producers.get();
        match producer.send(record, Duration::from_secs(10)).await {
            Ok(_) => {
                metrics::counter!("consumer_dead_lettered_total", "topic" => msg.topic().to_owned())
                    .increment(1);
                tracing::warn!(
                    topic = msg.topic(),
                    partition = msg.partition(),
                    offset = msg.offset(),
                    reason,
                    "Message sent to the dead-letter topic."
                );
                Ok(())
            }
            Err((err, _)) => {
                self.ctx.producers.replace(generation);
                Err(Transient(format!("dead-letter publish failed: {err}")))
            }
        }
    }

    /// Handles one message to a final outcome, or a transient failure.
    async fn handle(&self, msg: &OwnedMessage) -> Result<&'static str, Transient> {
        let kind = *self
            .kinds
            .get(msg.topic())
            .ok_or_else(|| Transient(format!("unexpected topic {}", msg.topic())))?;
        let (key, event) = match parse_message(kind, header_text(msg, "ce_id"), msg.payload()) {
            Ok(parsed) => parsed,
            Err(reason) => {
                self.dead_letter(msg, &reason).await?;
                return Ok("dead_lettered");
            }
        };
        let span = tracing::info_span!("event", topic = msg.topic(), order_id = %event.order_id(),
            trace_id = header_text(msg, "traceparent").and_then(|t| t.split('-').nth(1)).unwrap_or(""));
        let _guard = span.enter();
        let transient = |e: StoreError| Transient(e.to_string());
        let mut client = self.pool.get().await.map_err(|e| transient(e.into()))?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| transient(e.into()))?;
        let ictx = InboundContext {
            key: &key,
            topic: msg.topic(),
            traceparent: header_text(msg, "traceparent"),
            shards: self.ctx.settings.common.outbox_shards,
            notify: self.ctx.settings.outbox_notify,
        };
        match apply_inbound(&tx, &ictx, &event).await {
            Ok(outcome) => {
                tx.commit().await.map_err(|e| transient(e.into()))?;
                tracing::info!(key, outcome = outcome.as_str(), "Event consumed.");
                Ok(outcome.as_str())
            }
            Err(e) if e.is_transient() => Err(transient(e)),
            Err(StoreError::NotFound) => {
                drop(tx);
                self.dead_letter(msg, "unknown order").await?;
                Ok("dead_lettered")
            }
            Err(e) => {
                drop(tx);
                tracing::error!(error = %e, "Event cannot be applied.");
                self.dead_letter(msg, &format!("cannot apply: {e}")).await?;
                Ok("dead_lettered")
            }
        }
    }

    /// Processes one partition's messages in order.
    async fn run(self, mut rx: mpsc::Receiver<OwnedMessage>, shutdown: CancellationToken) {
        while let Some(msg) = rx.recv().await {
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
            loop {
                let started = Instant::now();
                match self.handle(&msg).await {
                    Ok(outcome) => {
                        metrics::counter!("consumed_events_total", "topic" => msg.topic().to_owned(),
                            "outcome" => outcome)
                        .increment(1);
                        metrics::histogram!("consumer_processing_duration_seconds")
                            .record(started.elapsed().as_secs_f64());
                        if let Err(e) = self.consumer.store_offset(
                            msg.topic(),
                            msg.partition(),
                            msg.offset() + 1,
                        ) {
                            tracing::debug!(error = %e, "Offset not stored (partition revoked?).");
                        }
                        self.ctx.consumer_ok.store(true, Ordering::Relaxed);
                        break;
                    }
                    Err(err) => {
                        self.ctx.consumer_ok.store(false, Ordering::Relaxed);
                        let delay = backoff.next_delay();
                        tracing::warn!(topic = msg.topic(), partition = msg.partition(),
                            offset = msg.offset(), error = %err, retry_in_ms = delay.as_millis() as u64,
                            "Consuming failed; retrying without moving the offset.");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
        }
    }
}

fn create_consumer(ctx: &RelayContext) -> Result<StreamConsumer, rdkafka::error::KafkaError> {
    let c = &ctx.settings.consumer;
    let mut config = client_config(&ctx.settings.kafka);
    config
        .set("group.id", &c.group_id)
        .set("group.instance.id", &c.instance_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            c.session_timeout.as_millis().to_string(),
        )
        .set("max.poll.interval.ms", "600000");
    config.create()
}

/// Consumes until `shutdown`, then commits the stored offsets and leaves.
pub async fn run(ctx: Arc<RelayContext>, pool: Pool, shutdown: CancellationToken) {
    let c = &ctx.settings.consumer;
    let kinds: HashMap<String, TopicKind> = [
        (&c.payment_authorized_topic, TopicKind::PaymentAuthorized),
        (&c.payment_failed_topic, TopicKind::PaymentFailed),
        (&c.inventory_reserved_topic, TopicKind::InventoryReserved),
    ]
    .into_iter()
    .map(|(t, k)| (ctx.settings.kafka.topic(t), k))
    .collect();
    let kinds = Arc::new(kinds);
    let consumer = match create_consumer(&ctx) {
        Ok(consumer) => Arc::new(consumer),
        Err(err) => {
            ctx.consumer_ok.store(false, Ordering::Relaxed);
            tracing::error!(error = %err, "Cannot create the Kafka consumer.");
            return;
        }
    };
    let topics: Vec<&str> = kinds.keys().map(String::as_str).collect();
    if let Err(err) = consumer.subscribe(&topics) {
        ctx.consumer_ok.store(false, Ordering::Relaxed);
        tracing::error!(error = %err, "Cannot subscribe to the inbound topics.");
        return;
    }
    tracing::info!(group = %c.group_id, instance = %c.instance_id, ?topics, "Consumer started.");
    let dlq_topic = ctx.settings.kafka.topic(&c.dlq_topic);
    let mut partitions: HashMap<(String, i32), mpsc::Sender<OwnedMessage>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = consumer.recv() => received,
        };
        match received {
            Ok(msg) => {
                let msg = msg.detach();
                let key = (msg.topic().to_owned(), msg.partition());
                let sender = partitions.entry(key).or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(256);
                    let worker = Worker {
                        ctx: ctx.clone(),
                        pool: pool.clone(),
                        consumer: consumer.clone(),
                        kinds: kinds.clone(),
                        dlq_topic: dlq_topic.clone(),
                    };
                    tasks.spawn(worker.run(rx, shutdown.clone()));
                    tx
                });
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = sender.send(msg) => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "Kafka consumer error.");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
    // Let each partition finish the message at hand, then commit and leave.
    drop(partitions);
    let grace = ctx.settings.common.shutdown_timeout;
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    // Closing a consumer blocks (it leaves the group): do it off the runtime.
    let closing = consumer;
    let _ = tokio::task::spawn_blocking(move || {
        let _ = closing.commit_consumer_state(CommitMode::Sync);
        closing.unsubscribe();
    })
    .await;
    tracing::info!("Consumer stopped.");
}

/// Removes old inbox rows every ten minutes, in small batches.
pub async fn purge_inbox(pool: Pool, retention: Duration, shutdown: CancellationToken) {
    loop {
        if let Ok(client) = pool.get().await {
            loop {
                match order_shared::db::inbox::purge_processed_events(&client, retention, 1000)
                    .await
                {
                    Ok(1000) => continue,
                    Ok(n) => {
                        if n > 0 {
                            tracing::info!(deleted = n, "Purged old processed_events rows.");
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Purging processed_events failed.");
                        break;
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = "0190a6f0-0000-7000-8000-000000000001";

    #[test]
    fn the_ce_id_header_wins_over_the_event_id() {
        let body = format!(r#"{{"eventId":"e-1","orderId":"{ORDER}","paymentId":"p-9"}}"#);
        let (key, event) = parse_message(
            TopicKind::PaymentAuthorized,
            Some("ce-1"),
            Some(body.as_bytes()),
        )
        .unwrap();
        assert_eq!(key, "ce-1");
        assert_eq!(
            event,
            InboundEvent::PaymentAuthorized {
                order_id: ORDER.parse().unwrap(),
                payment_id: Some("p-9".into())
            }
        );
        let (key, _) =
            parse_message(TopicKind::PaymentAuthorized, None, Some(body.as_bytes())).unwrap();
        assert_eq!(key, "e-1");
    }

    #[test]
    fn fields_may_sit_under_data() {
        let body = format!(
            r#"{{"eventId":"e-2","data":{{"orderId":"{ORDER}","reason":"card declined"}}}}"#
        );
        let (_, event) =
            parse_message(TopicKind::PaymentFailed, None, Some(body.as_bytes())).unwrap();
        assert_eq!(
            event,
            InboundEvent::PaymentFailed {
                order_id: ORDER.parse().unwrap(),
                reason: Some("card declined".into())
            }
        );
    }

    #[test]
    fn bad_messages_get_a_reason() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "empty"),
            (b"{not json", "not JSON"),
            (b"[1,2]", "not a JSON object"),
            (
                br#"{"orderId":"0190a6f0-0000-7000-8000-000000000001"}"#,
                "idempotency key",
            ),
            (br#"{"eventId":"e"}"#, "orderId"),
            (br#"{"eventId":"e","orderId":"42"}"#, "UUID"),
        ];
        for (body, expected) in cases {
            let err = parse_message(TopicKind::PaymentAuthorized, None, Some(body)).unwrap_err();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
        let bad_time = format!(r#"{{"eventId":"e","orderId":"{ORDER}","reservedAt":"soon"}}"#);
        assert!(
            parse_message(
                TopicKind::InventoryReserved,
                None,
                Some(bad_time.as_bytes())
            )
            .is_err()
        );
    }
}
