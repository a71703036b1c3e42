//! `NewOrder::parse`: limits, every field named, control characters,
//! merged lines.

use super::*;

fn address() -> AddressInput {
    AddressInput {
        name: "Ada Lovelace".into(),
        line1: "1 Main St".into(),
        city: "London".into(),
        postal_code: "N1".into(),
        country: "GB".into(),
        ..AddressInput::default()
    }
}

fn item(id: &str, quantity: i64, unit_price: i64) -> ItemInput {
    ItemInput {
        product_id: id.into(),
        quantity,
        unit_price,
    }
}

fn input(items: Vec<ItemInput>) -> NewOrderInput {
    NewOrderInput {
        currency: "USD".into(),
        items,
        shipping_address: address(),
    }
}

fn fields(errors: Vec<FieldError>) -> Vec<String> {
    errors.into_iter().map(|e| e.field).collect()
}

#[test]
fn computes_line_and_order_totals() {
    let order = NewOrder::parse(&input(vec![item("sku-1", 2, 1999), item("sku-2", 1, 500)]))
        .expect("valid order");
    assert_eq!(order.lines[0].line_total, 3998);
    assert_eq!(order.lines[0].quantity.get(), 2);
    assert_eq!(order.total_amount, 4498);
}

#[test]
fn limits_are_inclusive() {
    let order = NewOrder::parse(&input(vec![
        item(&"x".repeat(64), 10_000, MAX_UNIT_PRICE),
        item("free", 1, 0),
    ]))
    .expect("limits are allowed");
    assert_eq!(order.total_amount, 10_000 * MAX_UNIT_PRICE);
}

#[test]
fn control_characters_are_refused_and_named() {
    let mut bad = input(vec![item("a\u{0}b", 1, 1), item("ok", 1, 1)]);
    bad.shipping_address.name = "Ada\u{1b}[31m".into();
    bad.shipping_address.line2 = Some("flat\u{0}".into());
    let errors = NewOrder::parse(&bad).unwrap_err();
    assert_eq!(
        errors,
        vec![
            FieldError::new("items[0].productId", CONTROL_CHARACTERS),
            FieldError::new("shippingAddress.name", CONTROL_CHARACTERS),
            FieldError::new("shippingAddress.line2", CONTROL_CHARACTERS),
        ]
    );
    let mut errors = Vec::new();
    assert!(check_text("reason", "two\nlines", &['\n'], &mut errors));
    assert!(!check_text("reason", "nul\u{0}", &['\n'], &mut errors));
    assert_eq!(errors.len(), 1);
}

#[test]
fn reports_every_bad_field() {
    let mut bad = input(vec![
        item("", 0, -1),
        item(&"x".repeat(65), 10_001, MAX_UNIT_PRICE + 1),
    ]);
    bad.currency = "usd".into();
    bad.shipping_address.country = "Germany".into();
    let errors = fields(NewOrder::parse(&bad).unwrap_err());
    assert_eq!(
        errors,
        vec![
            "currency",
            "items[0].productId",
            "items[0].quantity",
            "items[0].unitPrice",
            "items[1].productId",
            "items[1].quantity",
            "items[1].unitPrice",
            "shippingAddress.country",
        ]
    );
}

#[test]
fn refuses_empty_and_too_many_items() {
    assert_eq!(
        fields(NewOrder::parse(&input(vec![])).unwrap_err()),
        vec!["items"]
    );
    let many = (0..=MAX_ITEMS)
        .map(|i| item(&format!("p{i}"), 1, 1))
        .collect();
    assert_eq!(
        fields(NewOrder::parse(&input(many)).unwrap_err()),
        vec!["items"]
    );
}

#[test]
fn lines_of_one_product_at_one_price_are_merged() {
    let order = NewOrder::parse(&input(vec![
        item("a", 1, 300),
        item("b", 1, 5),
        item("a", 2, 300),
    ]))
    .expect("merged");
    assert_eq!(order.lines.len(), 2);
    assert_eq!(order.lines[0].product_id, "a");
    assert_eq!(order.lines[0].quantity.get(), 3);
    assert_eq!(order.lines[0].line_total, 900);
    assert_eq!(order.total_amount, 905);
    let two_prices = vec![item("a", 1, 1), item("a", 2, 5)];
    assert_eq!(
        fields(NewOrder::parse(&input(two_prices)).unwrap_err()),
        vec!["items[1].productId"]
    );
    let too_many = vec![item("a", 6000, 1), item("b", 1, 1), item("a", 5000, 1)];
    assert_eq!(
        fields(NewOrder::parse(&input(too_many)).unwrap_err()),
        vec!["items[2].quantity"]
    );
}

#[test]
fn address_needs_its_required_fields() {
    let mut bad = input(vec![item("a", 1, 1)]);
    bad.shipping_address = AddressInput::default();
    let errors = fields(NewOrder::parse(&bad).unwrap_err());
    assert_eq!(
        errors,
        vec![
            "shippingAddress.name",
            "shippingAddress.line1",
            "shippingAddress.city",
            "shippingAddress.postalCode",
            "shippingAddress.country",
        ]
    );
}
