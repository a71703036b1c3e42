//! Events the order service emits: their types and topics, the JSON envelope
//! written to the outbox, and the shard an order's events belong to.

use super::order::{Order, OrderLine, ShippingAddress};
use super::payloads::{
    CancelledData, ConfirmedData, DeliveredData, Envelope, PlacedData, ShippedData, SnapshotData,
};
use super::status::OrderStatus;
use super::values::OrderId;
use crate::trace::{TRACEPARENT, TraceParent};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The CloudEvents `source` of every event this service emits.
pub const EVENT_SOURCE: &str = "/order-service";

/// The kinds of event the service emits, one Kafka topic each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `order.placed`
    Placed,
    /// `order.confirmed`
    Confirmed,
    /// `order.shipped`
    Shipped,
    /// `order.delivered`
    Delivered,
    /// `order.cancelled`
    Cancelled,
    /// `order.snapshot`: the whole order, restating its current version
    /// (`order-relay snapshot`), for downstream rebuilds.
    Snapshot,
}

impl EventType {
    /// Every event type: the lifecycle's, then the snapshot.
    pub const ALL: [EventType; 6] = [
        EventType::Placed,
        EventType::Confirmed,
        EventType::Shipped,
        EventType::Delivered,
        EventType::Cancelled,
        EventType::Snapshot,
    ];

    /// The event type name, which is also its topic (before any prefix).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Placed => "order.placed",
            EventType::Confirmed => "order.confirmed",
            EventType::Shipped => "order.shipped",
            EventType::Delivered => "order.delivered",
            EventType::Cancelled => "order.cancelled",
            EventType::Snapshot => "order.snapshot",
        }
    }

    /// The event that announces a change into `status`.
    pub fn for_status(status: OrderStatus) -> EventType {
        match status {
            OrderStatus::Pending => EventType::Placed,
            OrderStatus::Confirmed => EventType::Confirmed,
            OrderStatus::Shipped => EventType::Shipped,
            OrderStatus::Delivered => EventType::Delivered,
            OrderStatus::Cancelled => EventType::Cancelled,
        }
    }
}

/// An outbox row before insertion.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// The event's id (UUIDv7), also the CloudEvents `id`.
    pub event_id: Uuid,
    /// The order it is about (the record key).
    pub order_id: OrderId,
    /// The order's version after the change.
    pub version: i64,
    /// What happened.
    pub event_type: EventType,
    /// The topic before any prefix.
    pub topic: &'static str,
    /// The whole Kafka record value (the envelope), as JSON text.
    pub payload: EventPayload,
    /// Extra record headers, e.g. `traceparent`.
    pub headers: Value,
    /// The outbox shard of the order (see [`shard_of`]).
    pub shard: i32,
}

/// An event's envelope written straight to JSON text (no `Value` tree on
/// the create path); stored in the outbox's `json` column as it is and
/// published as it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPayload(pub String);

impl EventPayload {
    /// The envelope as a `Value` (tests, documentation examples).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

/// Formats a timestamp as RFC 3339 UTC with millisecond precision.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The shard of an order: FNV-1a (64 bit) of the id's 16 bytes, modulo `shards`.
/// Stable across processes and releases, which is what the relay relies on.
pub fn shard_of(order_id: OrderId, shards: u32) -> i32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in order_id.as_uuid().as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // The modulus is at most u32::MAX, and OUTBOX_SHARDS is validated far below i32::MAX.
    (hash % u64::from(shards.max(1))) as i32
}

/// Trace context carried from the request into the record headers.
pub fn trace_headers(traceparent: Option<&TraceParent>) -> Value {
    let mut map = Map::new();
    if let Some(tp) = traceparent {
        map.insert(TRACEPARENT.into(), Value::String(tp.as_str().to_owned()));
    }
    Value::Object(map)
}

/// Something that happened to an order, as the domain decided it: its type,
/// when, and its `data` (the payload's variable part).
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened.
    pub event_type: EventType,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The event's `data` object, as JSON text: the envelope embeds it as
    /// it is, without a `Value` tree in between.
    pub data: Box<RawValue>,
}

impl Event {
    /// `data` as a `Value` (tests, documentation examples).
    pub fn data_value(&self) -> Value {
        serde_json::from_str(self.data.get()).unwrap_or(Value::Null)
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.event_type == other.event_type
            && self.occurred_at == other.occurred_at
            && self.data.get() == other.data.get()
    }
}

/// What changed, in the shape of the event's `data`.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // The fields are the contract's `data` fields (DESIGN section 4).
pub enum EventData<'a> {
    /// `order.placed`: the whole order.
    Placed {
        items: &'a [OrderLine],
        total_amount: i64,
        currency: &'a str,
        shipping_address: Option<&'a ShippingAddress>,
    },
    /// `order.confirmed`: the payment.
    Confirmed { payment_id: Option<&'a str> },
    /// `order.shipped`: the parcel.
    Shipped {
        carrier: &'a str,
        tracking_number: &'a str,
    },
    /// `order.delivered`.
    Delivered { delivered_at: DateTime<Utc> },
    /// `order.cancelled`: what to release.
    Cancelled {
        reason: Option<&'a str>,
        previous_status: OrderStatus,
        items: &'a [OrderLine],
    },
    /// `order.snapshot`: the whole order as it is now.
    Snapshot { order: &'a Order },
}

impl EventData<'_> {
    /// The event that happened at `at` with this data.
    pub fn at(&self, at: DateTime<Utc>) -> Event {
        Event {
            event_type: self.event_type(),
            occurred_at: at,
            data: self.to_json(),
        }
    }

    /// The type of event this data belongs to.
    pub fn event_type(&self) -> EventType {
        match self {
            EventData::Placed { .. } => EventType::Placed,
            EventData::Confirmed { .. } => EventType::Confirmed,
            EventData::Shipped { .. } => EventType::Shipped,
            EventData::Delivered { .. } => EventType::Delivered,
            EventData::Cancelled { .. } => EventType::Cancelled,
            EventData::Snapshot { .. } => EventType::Snapshot,
        }
    }

    fn to_json(&self) -> Box<RawValue> {
        // These types hold only strings, numbers and times, which always
        // serialize (as `json!` assumed before).
        let raw = match *self {
            EventData::Placed {
                items,
                total_amount,
                currency,
                shipping_address,
            } => to_raw_value(&PlacedData {
                items,
                total_amount,
                currency,
                shipping_address,
            }),
            EventData::Confirmed { payment_id } => to_raw_value(&ConfirmedData { payment_id }),
            EventData::Shipped {
                carrier,
                tracking_number,
            } => to_raw_value(&ShippedData {
                carrier,
                tracking_number,
            }),
            EventData::Delivered { delivered_at } => to_raw_value(&DeliveredData {
                delivered_at: rfc3339(delivered_at),
            }),
            EventData::Cancelled {
                reason,
                previous_status,
                items,
            } => to_raw_value(&CancelledData {
                reason,
                previous_status,
                items,
            }),
            EventData::Snapshot { order } => to_raw_value(order as SnapshotData<'_>),
        };
        raw.expect("event data serializes")
    }
}

/// Builds the outbox row announcing `event` for `order` at `order.version`.
pub fn outbox_event(
    order: &Order,
    event: &Event,
    traceparent: Option<&TraceParent>,
    shards: u32,
) -> Result<OutboxEvent, serde_json::Error> {
    let event_type = event.event_type;
    let event_id = Uuid::now_v7();
    let envelope = Envelope {
        event_id,
        event_type: event_type.as_str(),
        occurred_at: rfc3339(event.occurred_at),
        order_id: order.id,
        user_id: &order.user_id,
        version: order.version,
        data: &event.data,
    };
    Ok(OutboxEvent {
        event_id,
        order_id: order.id,
        version: order.version,
        event_type,
        topic: event_type.as_str(),
        payload: EventPayload(serde_json::to_string(&envelope)?),
        headers: trace_headers(traceparent),
        shard: shard_of(order.id, shards),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Currency;
    use crate::domain::values::Quantity;
    use crate::domain::values::UserId;
    use chrono::TimeZone;
    use serde_json::json;

    fn order() -> Order {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        Order {
            id: "0190a6f0-0000-7000-8000-000000000001".parse().unwrap(),
            user_id: UserId::new("alice"),
            status: OrderStatus::Pending,
            items: vec![OrderLine {
                product_id: "sku-1".into(),
                quantity: Quantity::new(2).unwrap(),
                unit_price: 1999,
                line_total: 3998,
            }],
            total_amount: 3998,
            currency: Currency::parse("USD").unwrap(),
            version: 1,
            shipping_address: None,
            carrier: None,
            tracking_number: None,
            cancellation_reason: None,
            payment_id: None,
            inventory_reserved_at: None,
            reservation_id: None,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn envelope_has_the_contract_fields() {
        let order = order();
        let data = EventData::Placed {
            items: &order.items,
            total_amount: order.total_amount,
            currency: order.currency.as_str(),
            shipping_address: None,
        };
        let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let event = outbox_event(&order, &data.at(order.created_at), tp.as_ref(), 32).unwrap();
        let v = &event.payload.to_value();
        assert_eq!(v["eventId"], json!(event.event_id));
        assert_eq!(v["eventType"], "order.placed");
        assert_eq!(v["occurredAt"], "2026-01-02T03:04:05.000Z");
        assert_eq!(v["orderId"], json!(order.id));
        assert_eq!(v["userId"], "alice");
        assert_eq!(v["version"], 1);
        assert_eq!(v["data"]["items"][0]["lineTotal"], 3998);
        assert_eq!(v["data"]["totalAmount"], 3998);
        assert_eq!(event.topic, "order.placed");
        assert_eq!(
            event.headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert!((0..32).contains(&event.shard));
    }

    #[test]
    fn cancelled_carries_reason_previous_status_and_items() {
        let order = order();
        let data = EventData::Cancelled {
            reason: Some("changed my mind"),
            previous_status: OrderStatus::Confirmed,
            items: &order.items,
        };
        let event = outbox_event(&order, &data.at(order.created_at), None, 32).unwrap();
        let payload = event.payload.to_value();
        assert_eq!(payload["data"]["previousStatus"], "CONFIRMED");
        assert_eq!(payload["data"]["reason"], "changed my mind");
        assert_eq!(payload["data"]["items"][0]["productId"], "sku-1");
        assert_eq!(event.headers, json!({}));
    }

    #[test]
    fn shard_is_stable_and_in_range() {
        let id: OrderId = "0190a6f0-0000-7000-8000-000000000001".parse().unwrap();
        assert_eq!(shard_of(id, 32), shard_of(id, 32));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let s = shard_of(OrderId::generate(), 32);
            assert!((0..32).contains(&s));
            seen.insert(s);
        }
        assert_eq!(seen.len(), 32, "v7 ids spread over every shard");
        assert_eq!(shard_of(id, 1), 0);
    }

    #[test]
    fn every_status_has_its_event() {
        for t in EventType::ALL {
            assert!(t.as_str().starts_with("order."));
        }
        assert_eq!(
            EventType::for_status(OrderStatus::Shipped),
            EventType::Shipped
        );
    }
}
