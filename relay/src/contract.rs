//! The relay against the AsyncAPI document (`order_shared::asyncapi`): the
//! headers it writes and the records it reads are the ones described.

#[cfg(test)]
mod tests {
    use crate::consumer::dead_letter::{
        OFFSET_HEADER, PARTITION_HEADER, REASON_HEADER, TOPIC_HEADER,
    };
    use crate::consumer::message::{TopicKind, parse_message};
    use crate::kafka::record_headers;
    use order_shared::db::outbox::OutboxRow;
    use order_shared::domain::InboundEvent;
    use rdkafka::message::{Header, Headers, OwnedHeaders};
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn doc() -> Value {
        order_shared::asyncapi::document("test")
    }

    fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no schema {schema}"))
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn published_headers_are_the_documented_ones() {
        let row = OutboxRow {
            id: 1,
            event_id: uuid::Uuid::now_v7(),
            order_id: uuid::Uuid::now_v7(),
            version: 1,
            event_type: "order.placed".into(),
            topic: "order.placed".into(),
            payload: "{}".into(),
            headers: serde_json::json!({
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            }),
            created_at: chrono::Utc::now(),
            attempts: 0,
            parked: false,
        };
        let written: BTreeSet<String> = record_headers(&row)
            .iter()
            .map(|h| h.key.to_owned())
            .collect();
        assert_eq!(written, properties(&doc(), "OutboundHeaders"));
    }

    #[test]
    fn dead_letter_headers_are_the_documented_ones() {
        let ours: BTreeSet<String> = [REASON_HEADER, TOPIC_HEADER, PARTITION_HEADER, OFFSET_HEADER]
            .map(str::to_owned)
            .into();
        assert_eq!(ours, properties(&doc(), "DeadLetterHeaders"));
    }

    #[test]
    fn every_documented_inbound_example_is_read_as_its_event() {
        let doc = doc();
        let kinds = [
            ("PaymentAuthorized", TopicKind::PaymentAuthorized),
            ("PaymentFailed", TopicKind::PaymentFailed),
            ("InventoryReserved", TopicKind::InventoryReserved),
        ];
        for (name, kind) in kinds {
            let message = &doc["components"]["messages"][name];
            let topic = message["name"].as_str().unwrap();
            let example = &message["examples"][0];
            let headers = example["headers"].as_object().unwrap().iter().fold(
                OwnedHeaders::new(),
                |h, (k, v)| {
                    h.insert(Header {
                        key: k,
                        value: v.as_str(),
                    })
                },
            );
            let body = example["payload"].to_string();
            let inbound = parse_message(kind, Some(&headers), Some(body.as_bytes()), topic, "")
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(inbound.key, example["headers"]["ce_id"]);
            assert_eq!(inbound.scope, example["headers"]["ce_source"]);
            let documented: BTreeSet<String> = properties(&doc, name);
            let sent: BTreeSet<String> = example["payload"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            assert!(sent.is_subset(&documented), "{name}: {sent:?}");
            match (kind, inbound.event) {
                (
                    TopicKind::PaymentAuthorized,
                    InboundEvent::PaymentAuthorized { payment_id, .. },
                ) => {
                    assert_eq!(
                        payment_id.as_deref(),
                        example["payload"]["paymentId"].as_str()
                    );
                }
                (TopicKind::PaymentFailed, InboundEvent::PaymentFailed { reason, .. }) => {
                    assert_eq!(reason.as_deref(), example["payload"]["reason"].as_str());
                }
                (
                    TopicKind::InventoryReserved,
                    InboundEvent::InventoryReserved { reserved_at, .. },
                ) => {
                    assert!(reserved_at.is_some());
                }
                (kind, event) => panic!("{kind:?} read as {event:?}"),
            }
        }
    }
}
