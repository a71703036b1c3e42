//! Example records for the AsyncAPI document, made by the code that makes
//! the real ones: an order placed, confirmed, shipped and delivered, another
//! one cancelled, and a snapshot, each through [`Order::apply`] and
//! [`outbox_event`]. The AsyncAPI parser checks every example against its
//! message's schemas, so a payload that left its type would be caught.

use crate::domain::events::{EVENT_SOURCE, EventData, EventType, outbox_event, rfc3339};
use crate::domain::payloads::OutboundHeaders;
use crate::domain::{AddressInput, Change, ItemInput, NewOrder, NewOrderInput, Order, Step};
use crate::domain::{OrderId, UserId};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 9, minute, 0)
        .single()
        .unwrap_or_default()
}

/// A fixed UUIDv7-shaped id for the examples.
fn example_id(n: u128) -> OrderId {
    OrderId::from(uuid::Uuid::from_u128(
        0x0196_f2a4_7c1e_7b3a_9d2e_0000_0000_0000 + n,
    ))
}

fn new_order() -> Option<NewOrder> {
    NewOrder::parse(&NewOrderInput {
        currency: "USD".into(),
        items: vec![ItemInput {
            product_id: "sku-1".into(),
            quantity: 2,
            unit_price: 1999,
        }],
        shipping_address: AddressInput {
            name: "Ada Lovelace".into(),
            line1: "1 Main St".into(),
            city: "London".into(),
            postal_code: "N1 9GU".into(),
            country: "GB".into(),
            ..AddressInput::default()
        },
    })
    .ok()
}

/// One `{headers, payload}` example per event type, in [`EventType::ALL`] order.
pub fn outbound() -> Vec<(EventType, Value)> {
    let Some(new) = new_order() else {
        return Vec::new();
    };
    let user = UserId::new("alice");
    let placed = Order::place(example_id(0x100), user.clone(), &new, "user:alice", at(0));
    let mut events = vec![(placed.order.clone(), placed.event.clone())];
    let mut order = placed.order.clone();
    let lifecycle = [
        Change::Confirm {
            payment_id: Some("pay-42".into()),
        },
        Change::Ship {
            carrier: "DHL".into(),
            tracking_number: "JD014600006281230704".into(),
        },
        Change::Deliver,
    ];
    for (minute, change) in (1..).zip(lifecycle) {
        if let Ok(Step::Changed(c)) = order.apply(&change, "admin:bob", at(minute)) {
            events.push((c.order.clone(), c.event.clone()));
            order = c.order;
        }
    }
    let other = Order::place(example_id(0x200), user, &new, "user:alice", at(5));
    let cancel = Change::Cancel {
        reason: Some("changed my mind".into()),
    };
    if let Ok(Step::Changed(c)) = other.order.apply(&cancel, "user:alice", at(6)) {
        events.push((c.order.clone(), c.event.clone()));
    }
    let snapshot = EventData::Snapshot { order: &order }.at(at(9));
    events.push((order.clone(), snapshot));
    events
        .iter()
        .zip(1..)
        .filter_map(|((order, event), n)| {
            let mut row = outbox_event(order, event, None, 32).ok()?;
            // Fixed ids, so that the document is the same on every build.
            let event_id = *example_id(n).as_uuid();
            row.event_id = event_id;
            let mut payload = row.payload.to_value();
            payload["eventId"] = json!(event_id);
            let headers = OutboundHeaders {
                ce_specversion: "1.0".into(),
                ce_id: event_id,
                ce_type: row.event_type.as_str().into(),
                ce_source: EVENT_SOURCE.into(),
                ce_subject: *row.order_id.as_uuid(),
                ce_time: event.occurred_at,
                content_type: "application/json".into(),
                traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            };
            let example = json!({
                "name": row.event_type.as_str(),
                "headers": serde_json::to_value(headers).ok()?,
                "payload": payload,
            });
            Some((row.event_type, example))
        })
        .collect()
}

/// One example per consumed topic: (topic, `{headers, payload}`).
pub fn inbound() -> Vec<(&'static str, Value)> {
    let order = "0196f2a4-7c1e-7b3a-9d2e-4f5a6b7c8d9e";
    let headers =
        |id: &str, source: &str| json!({"ce_id": id, "ce_source": source, "ce_specversion": "1.0"});
    vec![
        (
            "payment.authorized",
            json!({
                "name": "payment.authorized",
                "headers": headers("pay-evt-1", "/payment-service"),
                "payload": {"eventId": "pay-evt-1", "orderId": order, "paymentId": "pay-42"},
            }),
        ),
        (
            "payment.failed",
            json!({
                "name": "payment.failed",
                "headers": headers("pay-evt-2", "/payment-service"),
                "payload": {"eventId": "pay-evt-2", "orderId": order, "reason": "card declined"},
            }),
        ),
        (
            "inventory.reserved",
            json!({
                "name": "inventory.reserved",
                "headers": headers("inv-evt-1", "/inventory-service"),
                "payload": {
                    "eventId": "inv-evt-1",
                    "orderId": order,
                    "reservationId": "res-7",
                    "reservedAt": rfc3339(at(2)),
                },
            }),
        ),
    ]
}
