//! Orders: the validated input of a new order (parse, don't validate) and the
//! read model that the database returns.

use super::money::{self, Currency, MAX_UNIT_PRICE};
use super::status::OrderStatus;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const MAX_ITEMS: usize = 100;
pub const MAX_QUANTITY: i64 = 10_000;
pub const MAX_PRODUCT_ID_CHARS: usize = 64;
const MAX_ADDRESS_FIELD_CHARS: usize = 200;

/// One invalid field of a request, named by its JSON path (`items[2].quantity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A line of a create request, as the client sent it (numbers still unchecked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInput {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price: i64,
}

/// A shipping address as the client sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressInput {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub state: Option<String>,
    pub postal_code: String,
    pub country: String,
}

/// A create request as the client sent it, before the business rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrderInput {
    pub currency: String,
    pub items: Vec<ItemInput>,
    pub shipping_address: AddressInput,
}

/// A validated order line; `line_total` is computed, never taken from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: i32,
    pub unit_price: i64,
    pub line_total: i64,
}

/// A validated shipping address (stored as JSON on the order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub postal_code: String,
    pub country: String,
}

/// A new order that satisfies every rule: 1..=100 distinct products,
/// quantities 1..=10000, prices 0..=10^9 minor units, a total that fits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder {
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
    pub total_amount: i64,
    pub shipping_address: ShippingAddress,
}

impl NewOrder {
    /// Applies the business rules and reports every invalid field at once.
    ///
    /// Duplicate product ids are refused rather than merged: two lines of one
    /// product with different prices have no obvious meaning, and the client
    /// can merge its own cart.
    pub fn parse(input: NewOrderInput) -> Result<NewOrder, Vec<FieldError>> {
        let mut errors = Vec::new();
        let currency = Currency::parse(&input.currency)
            .map_err(|msg| errors.push(FieldError::new("currency", msg)))
            .ok();

        if input.items.is_empty() || input.items.len() > MAX_ITEMS {
            errors.push(FieldError::new(
                "items",
                format!("must hold between 1 and {MAX_ITEMS} items"),
            ));
        }
        let mut lines = Vec::with_capacity(input.items.len());
        for (i, item) in input.items.iter().enumerate() {
            if let Some(line) = parse_line(i, item, &input.items[..i], &mut errors) {
                lines.push(line);
            }
        }
        let shipping_address = parse_address(&input.shipping_address, &mut errors);
        let total_amount = money::order_total(lines.iter().map(|l| l.line_total));
        if total_amount.is_none() {
            errors.push(FieldError::new("items", "order total is too large"));
        }

        match (currency, total_amount) {
            (Some(currency), Some(total_amount)) if errors.is_empty() => Ok(NewOrder {
                currency,
                lines,
                total_amount,
                shipping_address,
            }),
            _ => Err(errors),
        }
    }
}

fn parse_line(
    i: usize,
    item: &ItemInput,
    earlier: &[ItemInput],
    errors: &mut Vec<FieldError>,
) -> Option<OrderLine> {
    let before = errors.len();
    let field = |name: &str| format!("items[{i}].{name}");
    let chars = item.product_id.chars().count();
    if chars == 0 || chars > MAX_PRODUCT_ID_CHARS || item.product_id.trim() != item.product_id {
        errors.push(FieldError::new(
            field("productId"),
            format!("must be 1 to {MAX_PRODUCT_ID_CHARS} characters without surrounding spaces"),
        ));
    } else if earlier.iter().any(|e| e.product_id == item.product_id) {
        errors.push(FieldError::new(
            field("productId"),
            "appears more than once; send one line per product",
        ));
    }
    if !(1..=MAX_QUANTITY).contains(&item.quantity) {
        errors.push(FieldError::new(
            field("quantity"),
            format!("must be between 1 and {MAX_QUANTITY}"),
        ));
    }
    if !(0..=MAX_UNIT_PRICE).contains(&item.unit_price) {
        errors.push(FieldError::new(
            field("unitPrice"),
            format!("must be between 0 and {MAX_UNIT_PRICE} minor units"),
        ));
    }
    if errors.len() > before {
        return None;
    }
    let quantity = i32::try_from(item.quantity).ok()?;
    Some(OrderLine {
        product_id: item.product_id.clone(),
        quantity,
        unit_price: item.unit_price,
        line_total: money::line_total(item.unit_price, quantity)?,
    })
}

fn parse_address(input: &AddressInput, errors: &mut Vec<FieldError>) -> ShippingAddress {
    let mut required = |name: &str, value: &str| {
        let len = value.trim().chars().count();
        if len == 0 || len > MAX_ADDRESS_FIELD_CHARS {
            errors.push(FieldError::new(
                format!("shippingAddress.{name}"),
                format!("is required, at most {MAX_ADDRESS_FIELD_CHARS} characters"),
            ));
        }
        value.trim().to_owned()
    };
    let name = required("name", &input.name);
    let line1 = required("line1", &input.line1);
    let city = required("city", &input.city);
    let postal_code = required("postalCode", &input.postal_code);
    let country = input.country.trim().to_owned();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.push(FieldError::new(
            "shippingAddress.country",
            "must be a two-letter ISO 3166-1 code in upper case, e.g. US",
        ));
    }
    let mut optional = |name: &str, value: &Option<String>| {
        let value = value.as_deref().map(str::trim).filter(|v| !v.is_empty())?;
        if value.chars().count() > MAX_ADDRESS_FIELD_CHARS {
            errors.push(FieldError::new(
                format!("shippingAddress.{name}"),
                format!("must be at most {MAX_ADDRESS_FIELD_CHARS} characters"),
            ));
        }
        Some(value.to_owned())
    };
    ShippingAddress {
        line2: optional("line2", &input.line2),
        state: optional("state", &input.state),
        name,
        line1,
        city,
        postal_code,
        country,
    }
}

/// An order as stored, with its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: Uuid,
    pub user_id: String,
    pub status: OrderStatus,
    pub items: Vec<OrderLine>,
    pub total_amount: i64,
    pub currency: String,
    pub version: i64,
    pub shipping_address: Option<ShippingAddress>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub cancellation_reason: Option<String>,
    pub payment_id: Option<String>,
    pub inventory_reserved_at: Option<DateTime<Utc>>,
    pub reservation_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One row of an order's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub from_status: Option<OrderStatus>,
    pub to_status: OrderStatus,
    pub reason: Option<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
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
        let order = NewOrder::parse(input(vec![item("sku-1", 2, 1999), item("sku-2", 1, 500)]))
            .expect("valid order");
        assert_eq!(order.lines[0].line_total, 3998);
        assert_eq!(order.total_amount, 4498);
    }

    #[test]
    fn limits_are_inclusive() {
        let order = NewOrder::parse(input(vec![
            item(&"x".repeat(64), 10_000, MAX_UNIT_PRICE),
            item("free", 1, 0),
        ]))
        .expect("limits are allowed");
        assert_eq!(order.total_amount, 10_000 * MAX_UNIT_PRICE);
    }

    #[test]
    fn reports_every_bad_field() {
        let mut bad = input(vec![
            item("", 0, -1),
            item(&"x".repeat(65), 10_001, MAX_UNIT_PRICE + 1),
        ]);
        bad.currency = "usd".into();
        bad.shipping_address.country = "Germany".into();
        let errors = fields(NewOrder::parse(bad).unwrap_err());
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
    fn refuses_empty_too_many_and_duplicate_items() {
        assert_eq!(
            fields(NewOrder::parse(input(vec![])).unwrap_err()),
            vec!["items"]
        );
        let many = (0..=MAX_ITEMS)
            .map(|i| item(&format!("p{i}"), 1, 1))
            .collect();
        assert_eq!(
            fields(NewOrder::parse(input(many)).unwrap_err()),
            vec!["items"]
        );
        let dup = vec![item("a", 1, 1), item("a", 2, 1)];
        assert_eq!(
            fields(NewOrder::parse(input(dup)).unwrap_err()),
            vec!["items[1].productId"]
        );
    }

    #[test]
    fn address_needs_its_required_fields() {
        let mut bad = input(vec![item("a", 1, 1)]);
        bad.shipping_address = AddressInput::default();
        let errors = fields(NewOrder::parse(bad).unwrap_err());
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
}
