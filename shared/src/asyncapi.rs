//! The AsyncAPI 3.0 document of every topic the service publishes and
//! consumes. Payload and header schemas are generated with schemars from the
//! types in [`crate::domain::payloads`], the very types the events are
//! serialized through; the examples are made by the code that makes the real
//! records (`examples`). `order-api` serves it at `/api/asyncapi.json`,
//! `docs/asyncapi.json` keeps a copy, and `./scripts/test.sh` validates it
//! with the AsyncAPI project's parser.

mod examples;

use crate::domain::EventType;
use crate::domain::payloads::{
    CancelledData, ConfirmedData, DEAD_LETTER_TOPIC, DeadLetterHeaders, DeliveredData, Envelope,
    INVENTORY_RESERVED_TOPIC, InboundHeaders, InventoryReserved, OutboundHeaders,
    PAYMENT_AUTHORIZED_TOPIC, PAYMENT_FAILED_TOPIC, PaymentAuthorized, PaymentFailed, PlacedData,
    ShippedData, SnapshotData,
};
use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

/// Where the generated schemas live in the document.
const SCHEMAS: &str = "#/components/schemas/";

/// Collects the schemas of the document's types under `components/schemas`.
struct Schemas {
    outbound: SchemaGenerator,
    inbound: SchemaGenerator,
    named: Map<String, Value>,
}

impl Schemas {
    fn new() -> Self {
        let settings = |contract| {
            let mut s = SchemaSettings::draft07();
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
            s.contract = contract;
            s
        };
        Schemas {
            outbound: SchemaGenerator::new(settings(Contract::Serialize)),
            inbound: SchemaGenerator::new(settings(Contract::Deserialize)),
            named: Map::new(),
        }
    }

    /// The schema of `T` as written, stored as `name`; returns its `$ref`.
    fn sent<T: JsonSchema>(&mut self, name: &str) -> Value {
        let schema = self.outbound.root_schema_for::<T>().to_value();
        self.store(name, schema)
    }

    /// The schema of `T` as read, stored as `name`; returns its `$ref`.
    fn read<T: JsonSchema>(&mut self, name: &str) -> Value {
        let schema = self.inbound.root_schema_for::<T>().to_value();
        self.store(name, schema)
    }

    fn store(&mut self, name: &str, mut schema: Value) -> Value {
        if let Some(root) = schema.as_object_mut() {
            // Definitions of nested types are collected by the generators.
            root.remove("components");
            root.remove("$schema");
            root.insert("title".into(), Value::String(name.to_owned()));
        }
        self.named.insert(name.to_owned(), schema);
        json!({ "$ref": format!("{SCHEMAS}{name}") })
    }

    /// The event envelope with `data` of type `D`, and `eventType` fixed.
    fn event<D: JsonSchema>(&mut self, event_type: EventType, name: &str) -> Value {
        let reference = self.sent::<Envelope<'static, D>>(name);
        if let Some(props) = self
            .named
            .get_mut(name)
            .and_then(|s| s.get_mut("properties"))
        {
            props["eventType"] = json!({ "const": event_type.as_str(), "type": "string" });
        }
        reference
    }

    fn into_components(mut self) -> Map<String, Value> {
        let mut all = self.outbound.take_definitions(true);
        all.extend(self.inbound.take_definitions(true));
        all.extend(self.named);
        all
    }
}

/// What the document says about one event type the service emits.
fn outbound_text(event_type: EventType) -> (&'static str, &'static str, &'static str) {
    match event_type {
        EventType::Placed => (
            "OrderPlaced",
            "An order was placed",
            "Version 1 of a new order: its items, total, currency and shipping address.",
        ),
        EventType::Confirmed => (
            "OrderConfirmed",
            "An order's payment was authorized",
            "PENDING -> CONFIRMED, after `payment.authorized`.",
        ),
        EventType::Shipped => (
            "OrderShipped",
            "An order was shipped",
            "CONFIRMED -> SHIPPED, with the carrier and tracking number.",
        ),
        EventType::Delivered => (
            "OrderDelivered",
            "An order was delivered",
            "SHIPPED -> DELIVERED.",
        ),
        EventType::Cancelled => (
            "OrderCancelled",
            "An order was cancelled",
            "PENDING or CONFIRMED -> CANCELLED (by its owner, an admin or `payment.failed`), \
             with the items to release.",
        ),
        EventType::Snapshot => (
            "OrderSnapshot",
            "The whole state of an order",
            "Written by `order-relay snapshot` for downstream rebuilds. It restates the \
             order's current version instead of adding 1: treat it as state, and \
             deduplicate it by `eventId`, not by version.",
        ),
    }
}

fn payload_schema(schemas: &mut Schemas, event_type: EventType, name: &str) -> Value {
    let name = format!("{name}Event");
    match event_type {
        EventType::Placed => schemas.event::<PlacedData<'static>>(event_type, &name),
        EventType::Confirmed => schemas.event::<ConfirmedData<'static>>(event_type, &name),
        EventType::Shipped => schemas.event::<ShippedData<'static>>(event_type, &name),
        EventType::Delivered => schemas.event::<DeliveredData>(event_type, &name),
        EventType::Cancelled => schemas.event::<CancelledData<'static>>(event_type, &name),
        EventType::Snapshot => schemas.event::<SnapshotData<'static>>(event_type, &name),
    }
}

/// A channel, its one message, and the operation on it.
struct Topic {
    id: String,
    address: &'static str,
    description: String,
    message: Value,
    action: &'static str,
    summary: String,
}

fn kafka_key(description: &str) -> Value {
    json!({
        "kafka": {
            "key": { "type": "string", "description": description },
            "bindingVersion": "0.5.0",
        }
    })
}

const PREFIX_NOTE: &str = "The address is prefixed with `KAFKA_TOPIC_PREFIX` when set.";

fn outbound_topics(schemas: &mut Schemas) -> Vec<Topic> {
    let headers = schemas.sent::<OutboundHeaders>("OutboundHeaders");
    let mut examples: Vec<_> = examples::outbound();
    EventType::ALL
        .iter()
        .map(|&event_type| {
            let (name, title, description) = outbound_text(event_type);
            let example: Vec<Value> = examples
                .iter_mut()
                .filter(|(t, _)| *t == event_type)
                .map(|(_, e)| e.take())
                .collect();
            let message = json!({
                "name": event_type.as_str(),
                "title": title,
                "summary": description,
                "contentType": "application/json",
                "headers": headers,
                "payload": payload_schema(schemas, event_type, name),
                "correlationId": { "location": "$message.header#/ce_subject" },
                "bindings": kafka_key("The order id: one order's events share a partition, in version order."),
                "examples": example,
            });
            Topic {
                id: name.to_owned(),
                address: event_type.as_str(),
                description: format!("{description} {PREFIX_NOTE}"),
                message,
                action: "send",
                summary: format!("The relay publishes `{}` from the outbox, in order per order, at least once.", event_type.as_str()),
            }
        })
        .collect()
}

fn inbound_topics(schemas: &mut Schemas) -> Vec<Topic> {
    let headers = schemas.read::<InboundHeaders>("InboundHeaders");
    let payloads = [
        (
            PAYMENT_AUTHORIZED_TOPIC,
            "PaymentAuthorized",
            "TOPIC_PAYMENT_AUTHORIZED",
            "Confirms a PENDING order.",
            schemas.read::<PaymentAuthorized>("PaymentAuthorized"),
        ),
        (
            PAYMENT_FAILED_TOPIC,
            "PaymentFailed",
            "TOPIC_PAYMENT_FAILED",
            "Cancels a PENDING or CONFIRMED order.",
            schemas.read::<PaymentFailed>("PaymentFailed"),
        ),
        (
            INVENTORY_RESERVED_TOPIC,
            "InventoryReserved",
            "TOPIC_INVENTORY_RESERVED",
            "Records the reservation on the order; no status change.",
            schemas.read::<InventoryReserved>("InventoryReserved"),
        ),
    ];
    let mut examples = examples::inbound();
    payloads
        .into_iter()
        .map(|(address, name, var, description, payload)| {
            let example: Vec<Value> = examples
                .iter_mut()
                .filter(|(t, _)| *t == address)
                .map(|(_, e)| e.take())
                .collect();
            Topic {
                id: name.to_owned(),
                address,
                description: format!("{description} The name is `{var}`; {PREFIX_NOTE}"),
                message: json!({
                    "name": address,
                    "title": description,
                    "contentType": "application/json",
                    "headers": headers,
                    "payload": payload,
                    "bindings": kafka_key("The order id (not required: the payload names the order)."),
                    "examples": example,
                }),
                action: "receive",
                summary: format!(
                    "The relay's consumer applies `{address}` once per idempotency key (the `ce_id` \
                     header, else `eventId`, scoped by `ce_source`); a record it cannot read goes to \
                     the dead-letter topic."
                ),
            }
        })
        .collect()
}

fn dead_letter_topic(schemas: &mut Schemas) -> Topic {
    let headers = schemas.sent::<DeadLetterHeaders>("DeadLetterHeaders");
    Topic {
        id: "DeadLetter".into(),
        address: DEAD_LETTER_TOPIC,
        description: format!(
            "Consumed records that could not be applied (`KAFKA_DLQ_TOPIC`). {PREFIX_NOTE}"
        ),
        message: json!({
            "name": DEAD_LETTER_TOPIC,
            "title": "A consumed record that could not be applied",
            "summary": "The original key, value and headers untouched, plus `dlq_*` headers; \
                        `order-relay dlq replay` sends it back to its topic.",
            "headers": headers,
            "payload": { "description": "The original record's value, as it was read." },
        }),
        action: "send",
        summary: "The consumer dead-letters malformed records and permanent failures.".into(),
    }
}

/// The AsyncAPI 3.0 document; `version` is the service's release.
pub fn document(version: &str) -> Value {
    let mut schemas = Schemas::new();
    let mut topics = outbound_topics(&mut schemas);
    topics.extend(inbound_topics(&mut schemas));
    topics.push(dead_letter_topic(&mut schemas));
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for t in topics {
        let channel = format!("{}{}", t.id[..1].to_lowercase(), &t.id[1..]);
        messages.insert(t.id.clone(), t.message);
        channels.insert(
            channel.clone(),
            json!({
                "address": t.address,
                "description": t.description,
                "messages": { t.id.clone(): { "$ref": format!("#/components/messages/{}", t.id) } },
            }),
        );
        let verb = if t.action == "send" {
            "publish"
        } else {
            "consume"
        };
        operations.insert(
            format!("{verb}{}", t.id),
            json!({
                "action": t.action,
                "channel": { "$ref": format!("#/channels/{channel}") },
                "summary": t.summary,
                "messages": [{ "$ref": format!("#/channels/{channel}/messages/{}", t.id) }],
            }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Order service events",
            "version": version,
            "description": "Events the order service publishes (from its transactional outbox, \
                at least once, in order per order: deduplicate by `eventId`, order by `version`) \
                and consumes (applied once per idempotency key). Records are JSON with \
                CloudEvents 1.0 binary-mode headers; the key is the order id.",
            "license": { "name": "Apache-2.0" },
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The broker of `./scripts/run.sh` (`KAFKA_BROKERS`).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas.into_components(),
        },
    })
}

#[cfg(test)]
mod tests;
