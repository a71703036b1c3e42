//! `JsonBody` writes the order bodies with serde; this holds that equal to
//! poem-openapi's own serialization (`ToJSON`), which the document
//! describes.

use crate::routes::wire::{Address, OrderBody, OrderItem, OrderPageBody, Status};
use chrono::TimeZone;
use poem_openapi::types::ToJSON;

fn body(every_field: bool) -> OrderBody {
    let at = chrono::Utc
        .timestamp_opt(1_790_000_000, 123_456_000)
        .unwrap();
    let some = |s: &str| every_field.then(|| s.to_owned());
    OrderBody {
        id: "0190a6f0-0000-7000-8000-000000000001".parse().unwrap(),
        user_id: "alice \"quoted\" \u{e9}".into(),
        status: Status::Cancelled,
        items: vec![OrderItem {
            product_id: "sku-1".into(),
            quantity: 2,
            unit_price: 1999,
            line_total: 3998,
        }],
        total_amount: 3998,
        currency: "USD".into(),
        version: 7,
        created_at: at,
        updated_at: at + chrono::Duration::seconds(1),
        shipping_address: every_field.then(|| Address {
            name: "A".into(),
            line1: "1 Main St".into(),
            line2: some("Flat 2"),
            city: "X".into(),
            state: some("CA"),
            postal_code: "1".into(),
            country: "US".into(),
        }),
        carrier: some("ups"),
        tracking_number: some("1Z"),
        cancellation_reason: some("changed my mind"),
        inventory_reserved_at: every_field.then_some(at),
        payment_id: some("pay-1"),
    }
}

#[test]
fn serde_writes_what_poem_openapi_writes() {
    for every_field in [false, true] {
        let order = body(every_field);
        assert_eq!(
            serde_json::to_value(&order).unwrap(),
            order.to_json().unwrap()
        );
        let page = OrderPageBody {
            items: vec![order.clone(), order],
            next_cursor: every_field.then(|| "cursor".into()),
        };
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            page.to_json().unwrap()
        );
    }
}
