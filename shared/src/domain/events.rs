//! Events the order service emits: their types and topics, the JSON envelope
//! written to the outbox, and the shard an order's events belong to.

use super::order::{Order, OrderLine, ShippingAddress};
use super::status::OrderStatus;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The CloudEvents `source` of every event this service emits.
pub const EVENT_SOURCE: &str = "/order-service";

/// The kinds of event the service emits, one Kafka topic each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Placed,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::Placed,
        EventType::Confirmed,
        EventType::Shipped,
        EventType::Delivered,
        EventType::Cancelled,
    ];

    /// The event type name, which is also its topic (before any prefix).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Placed => "order.placed",
            EventType::Confirmed => "order.confirmed",
            EventType::Shipped => "order.shipped",
            EventType::Delivered => "order.delivered",
            EventType::Cancelled => "order.cancelled",
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
    pub event_id: Uuid,
    pub order_id: Uuid,
    pub version: i64,
    pub event_type: EventType,
    pub topic: &'static str,
    /// The whole Kafka record value (the envelope).
    pub payload: Value,
    /// Extra record headers, e.g. `traceparent`.
    pub headers: Value,
    pub shard: i32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    event_id: Uuid,
    event_type: &'static str,
    occurred_at: String,
    order_id: Uuid,
    user_id: &'a str,
    version: i64,
    data: Value,
}

/// Formats a timestamp as RFC 3339 UTC with millisecond precision.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The shard of an order: FNV-1a (64 bit) of the id's 16 bytes, modulo `shards`.
/// Stable across processes and releases, which is what the relay relies on.
pub fn shard_of(order_id: Uuid, shards: u32) -> i32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in order_id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // The modulus is at most u32::MAX, and OUTBOX_SHARDS is validated far below i32::MAX.
    (hash % u64::from(shards.max(1))) as i32
}

/// Trace context carried from the request into the record headers.
pub fn trace_headers(traceparent: Option<&str>) -> Value {
    let mut map = Map::new();
    if let Some(tp) = traceparent {
        map.insert("traceparent".into(), Value::String(tp.to_owned()));
    }
    Value::Object(map)
}

/// What changed, in the shape of the event's `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData<'a> {
    Placed {
        items: &'a [OrderLine],
        total_amount: i64,
        currency: &'a str,
        shipping_address: Option<&'a ShippingAddress>,
    },
    Confirmed {
        payment_id: Option<&'a str>,
    },
    Shipped {
        carrier: &'a str,
        tracking_number: &'a str,
    },
    Delivered {
        delivered_at: DateTime<Utc>,
    },
    Cancelled {
        reason: Option<&'a str>,
        previous_status: OrderStatus,
        items: &'a [OrderLine],
    },
}

impl EventData<'_> {
    pub fn event_type(&self) -> EventType {
        match self {
            EventData::Placed { .. } => EventType::Placed,
            EventData::Confirmed { .. } => EventType::Confirmed,
            EventData::Shipped { .. } => EventType::Shipped,
            EventData::Delivered { .. } => EventType::Delivered,
            EventData::Cancelled { .. } => EventType::Cancelled,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            EventData::Placed {
                items,
                total_amount,
                currency,
                shipping_address,
            } => json!({
                "items": items,
                "totalAmount": total_amount,
                "currency": currency,
                "shippingAddress": shipping_address,
            }),
            EventData::Confirmed { payment_id } => json!({ "paymentId": payment_id }),
            EventData::Shipped {
                carrier,
                tracking_number,
            } => json!({ "carrier": carrier, "trackingNumber": tracking_number }),
            EventData::Delivered { delivered_at } => {
                json!({ "deliveredAt": rfc3339(*delivered_at) })
            }
            EventData::Cancelled {
                reason,
                previous_status,
                items,
            } => json!({
                "reason": reason,
                "previousStatus": previous_status,
                "items": items,
            }),
        }
    }
}

/// Builds the outbox row announcing `data` for `order` at `order.version`.
pub fn outbox_event(
    order: &Order,
    data: &EventData<'_>,
    occurred_at: DateTime<Utc>,
    traceparent: Option<&str>,
    shards: u32,
) -> OutboxEvent {
    let event_type = data.event_type();
    let event_id = Uuid::now_v7();
    let envelope = Envelope {
        event_id,
        event_type: event_type.as_str(),
        occurred_at: rfc3339(occurred_at),
        order_id: order.id,
        user_id: &order.user_id,
        version: order.version,
        data: data.to_json(),
    };
    OutboxEvent {
        event_id,
        order_id: order.id,
        version: order.version,
        event_type,
        topic: event_type.as_str(),
        payload: serde_json::to_value(envelope).unwrap_or(Value::Null),
        headers: trace_headers(traceparent),
        shard: shard_of(order.id, shards),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn order() -> Order {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        Order {
            id: Uuid::parse_str("0190a6f0-0000-7000-8000-000000000001").unwrap(),
            user_id: "alice".into(),
            status: OrderStatus::Pending,
            items: vec![OrderLine {
                product_id: "sku-1".into(),
                quantity: 2,
                unit_price: 1999,
                line_total: 3998,
            }],
            total_amount: 3998,
            currency: "USD".into(),
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
            currency: &order.currency,
            shipping_address: None,
        };
        let event = outbox_event(&order, &data, order.created_at, Some("00-abc-def-01"), 32);
        let v = &event.payload;
        assert_eq!(v["eventId"], json!(event.event_id));
        assert_eq!(v["eventType"], "order.placed");
        assert_eq!(v["occurredAt"], "2026-01-02T03:04:05.000Z");
        assert_eq!(v["orderId"], json!(order.id));
        assert_eq!(v["userId"], "alice");
        assert_eq!(v["version"], 1);
        assert_eq!(v["data"]["items"][0]["lineTotal"], 3998);
        assert_eq!(v["data"]["totalAmount"], 3998);
        assert_eq!(event.topic, "order.placed");
        assert_eq!(event.headers["traceparent"], "00-abc-def-01");
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
        let event = outbox_event(&order, &data, order.created_at, None, 32);
        assert_eq!(event.payload["data"]["previousStatus"], "CONFIRMED");
        assert_eq!(event.payload["data"]["reason"], "changed my mind");
        assert_eq!(event.payload["data"]["items"][0]["productId"], "sku-1");
        assert_eq!(event.headers, json!({}));
    }

    #[test]
    fn shard_is_stable_and_in_range() {
        let id = Uuid::parse_str("0190a6f0-0000-7000-8000-000000000001").unwrap();
        assert_eq!(shard_of(id, 32), shard_of(id, 32));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let s = shard_of(Uuid::now_v7(), 32);
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
