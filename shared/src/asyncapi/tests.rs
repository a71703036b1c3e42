use super::*;

fn doc() -> Value {
    document("0.0.0-test")
}

#[test]
fn every_event_the_code_emits_has_a_channel_a_send_operation_and_an_example() {
    let doc = doc();
    for event_type in EventType::ALL {
        let (name, _, _) = outbound_text(event_type);
        let channel = doc["channels"]
            .as_object()
            .unwrap()
            .values()
            .find(|c| c["address"] == event_type.as_str())
            .unwrap_or_else(|| panic!("no channel for {}", event_type.as_str()));
        assert!(channel["messages"][name].is_object());
        let op = &doc["operations"][format!("publish{name}")];
        assert_eq!(op["action"], "send", "{name}");
        let message = &doc["components"]["messages"][name];
        let example = &message["examples"][0]["payload"];
        assert_eq!(example["eventType"], event_type.as_str(), "{name}");
        let schema = &doc["components"]["schemas"][format!("{name}Event")];
        assert_eq!(
            schema["properties"]["eventType"]["const"],
            event_type.as_str()
        );
        // Every field of the real payload is a property of its schema.
        for key in example.as_object().unwrap().keys() {
            assert!(schema["properties"][key].is_object(), "{name}: {key}");
        }
    }
}

#[test]
fn every_consumed_topic_and_the_dead_letters_are_described() {
    let doc = doc();
    let addresses: Vec<&str> = doc["channels"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    for topic in [
        PAYMENT_AUTHORIZED_TOPIC,
        PAYMENT_FAILED_TOPIC,
        INVENTORY_RESERVED_TOPIC,
    ] {
        assert!(addresses.contains(&topic), "{topic}");
    }
    assert!(addresses.contains(&DEAD_LETTER_TOPIC));
    assert_eq!(
        doc["operations"]["consumePaymentAuthorized"]["action"],
        "receive"
    );
    assert_eq!(doc["operations"]["publishDeadLetter"]["action"], "send");
    assert_eq!(addresses.len(), EventType::ALL.len() + 4);
}

#[test]
fn every_reference_resolves() {
    let doc = doc();
    fn walk(v: &Value, doc: &Value) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let pointer = r.strip_prefix('#').expect("a local reference");
                    assert!(doc.pointer(pointer).is_some(), "dangling {r}");
                }
                map.values().for_each(|v| walk(v, doc));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, doc)),
            _ => {}
        }
    }
    walk(&doc, &doc);
}

#[test]
fn the_snapshot_schema_is_the_whole_order() {
    let doc = doc();
    let schemas = &doc["components"]["schemas"];
    let data = &schemas["OrderSnapshotEvent"]["properties"]["data"];
    let order = data["allOf"][0]["$ref"]
        .as_str()
        .or(data["$ref"].as_str())
        .expect("a reference to Order");
    let order = doc.pointer(order.strip_prefix('#').unwrap()).unwrap();
    for field in [
        "id",
        "userId",
        "status",
        "items",
        "totalAmount",
        "currency",
        "version",
    ] {
        assert!(order["properties"][field].is_object(), "{field}");
    }
}
