//! Kafka clients: the idempotent producer's settings (the producers
//! themselves: `producers`), topic creation, the record format, and the
//! split of errors into "the broker is the problem" and "this record is the
//! problem".

use crate::config::KafkaSettings;
use order_shared::db::outbox::OutboxRow;
use order_shared::domain::events::{EVENT_SOURCE, rfc3339};
use order_shared::trace::TRACEPARENT;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use std::time::Duration;

/// Base config shared by every client.
pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("client.id", "order-relay")
        .set("socket.keepalive.enable", "true")
        .set("log_level", "4");
    if let Some(debug) = &settings.debug {
        config.set("debug", debug).set("log_level", "7");
    }
    config
}

/// Idempotent, acks=all, ordered producer settings.
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = client_config(settings);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", settings.linger.as_millis().to_string())
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set(
            "message.timeout.ms",
            settings.message_timeout.as_millis().to_string(),
        )
        .set("message.max.bytes", settings.message_max_bytes.to_string());
    config
}

/// Creates `topics` (tolerating "already exists").
pub async fn create_topics(settings: &KafkaSettings, topics: &[String]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(settings).create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                settings.topic_partitions,
                TopicReplication::Fixed(settings.topic_replication),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(topic) => tracing::info!(topic, "Created topic."),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(topic, error = %code, "Cannot create topic.");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}

/// Who is at fault for a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Broker down, timeouts, leadership moves: retry later, count no attempt.
    Broker,
    /// The broker does not know the producer any more: replace it, then retry.
    Producer,
    /// The topic is missing: create it (when allowed), then retry.
    MissingTopic,
    /// The broker refuses us the topic (ACLs): every record alike, so retry
    /// later, count no attempt, and tell an operator.
    Unauthorized,
    /// Something about this record: count an attempt, park when exhausted.
    Record,
}

/// Sorts a send error (DESIGN section 8 lists the broker behaviours). A
/// refused authorisation (`TopicAuthorizationFailed`) is the broker's side:
/// an ACL fix cures every record alike, so no record is parked for it.
pub fn classify(err: &KafkaError) -> Fault {
    use RDKafkaErrorCode as C;
    let Some(code) = err.rdkafka_error_code() else {
        return Fault::Broker;
    };
    match code {
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => Fault::MissingTopic,
        C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed => Fault::Unauthorized,
        C::UnknownProducerId
        | C::OutOfOrderSequenceNumber
        | C::InvalidProducerEpoch
        | C::InvalidProducerIdMapping
        | C::Fatal
        | C::DuplicateSequenceNumber => Fault::Producer,
        C::MessageSizeTooLarge
        | C::InvalidMessage
        | C::InvalidMessageSize
        | C::InvalidRecord
        | C::InvalidTopic
        | C::PolicyViolation => Fault::Record,
        _ => Fault::Broker,
    }
}

/// CloudEvents 1.0 binary-mode headers, plus `traceparent` when the
/// request that caused the event had one.
pub fn record_headers(row: &OutboxRow) -> OwnedHeaders {
    let id = row.event_id.to_string();
    let subject = row.order_id.to_string();
    let time = rfc3339(row.created_at);
    let mut headers = OwnedHeaders::new_with_capacity(8)
        .insert(header("ce_specversion", "1.0"))
        .insert(header("ce_id", &id))
        .insert(header("ce_type", &row.event_type))
        .insert(header("ce_source", EVENT_SOURCE))
        .insert(header("ce_subject", &subject))
        .insert(header("ce_time", &time))
        .insert(header("content-type", "application/json"));
    if let Some(tp) = row.headers.get(TRACEPARENT).and_then(|v| v.as_str()) {
        headers = headers.insert(header(TRACEPARENT, tp));
    }
    headers
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    fn row(headers: serde_json::Value) -> OutboxRow {
        OutboxRow {
            id: 1,
            event_id: uuid::Uuid::now_v7(),
            order_id: uuid::Uuid::now_v7(),
            version: 2,
            event_type: "order.confirmed".into(),
            topic: "order.confirmed".into(),
            payload: "{}".into(),
            headers,
            created_at: chrono::Utc::now(),
            attempts: 0,
            parked: false,
        }
    }

    fn as_map(h: &OwnedHeaders) -> std::collections::HashMap<String, String> {
        h.iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn cloudevents_headers_are_complete() {
        let r = row(serde_json::json!({"traceparent": "00-a-b-01"}));
        let h = as_map(&record_headers(&r));
        assert_eq!(h["ce_specversion"], "1.0");
        assert_eq!(h["ce_id"], r.event_id.to_string());
        assert_eq!(h["ce_type"], "order.confirmed");
        assert_eq!(h["ce_source"], "/order-service");
        assert_eq!(h["ce_subject"], r.order_id.to_string());
        assert!(h["ce_time"].ends_with('Z'));
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["traceparent"], "00-a-b-01");
        let plain = as_map(&record_headers(&row(serde_json::json!({}))));
        assert!(!plain.contains_key("traceparent"));
    }

    #[test]
    fn errors_are_sorted_by_fault() {
        let send = |code| KafkaError::MessageProduction(code);
        assert_eq!(
            classify(&send(RDKafkaErrorCode::MessageTimedOut)),
            Fault::Broker
        );
        assert_eq!(
            classify(&send(RDKafkaErrorCode::AllBrokersDown)),
            Fault::Broker
        );
        assert_eq!(
            classify(&send(RDKafkaErrorCode::UnknownProducerId)),
            Fault::Producer
        );
        assert_eq!(
            classify(&send(RDKafkaErrorCode::UnknownTopicOrPartition)),
            Fault::MissingTopic
        );
        assert_eq!(
            classify(&send(RDKafkaErrorCode::MessageSizeTooLarge)),
            Fault::Record
        );
        assert_eq!(
            classify(&send(RDKafkaErrorCode::TopicAuthorizationFailed)),
            Fault::Unauthorized
        );
    }
}
