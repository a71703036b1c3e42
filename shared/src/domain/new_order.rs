//! A new order: the input as the client sent it, and the rules that turn it
//! into a valid order (parse, don't validate).

use super::money::{self, Currency, MAX_UNIT_PRICE};
use super::order::{OrderLine, ShippingAddress};
use super::values::Quantity;
use serde::Serialize;

pub use super::values::MAX_QUANTITY;

/// Most lines one order may hold.
pub const MAX_ITEMS: usize = 100;
/// Longest product id, in characters.
pub const MAX_PRODUCT_ID_CHARS: usize = 64;
const MAX_ADDRESS_FIELD_CHARS: usize = 200;

/// One invalid field of a request, named by its JSON path (`items[2].quantity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The JSON path of the field, e.g. `items[2].quantity`.
    pub field: String,
    /// What is wrong with it, for a human.
    pub message: String,
}

impl FieldError {
    /// An error for `field`.
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
    /// The product's id in the product service.
    pub product_id: String,
    /// Units ordered.
    pub quantity: i64,
    /// Price of one unit in minor units.
    pub unit_price: i64,
}

/// A shipping address as the client sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressInput {
    /// The addressee.
    pub name: String,
    /// Street and number.
    pub line1: String,
    /// Anything else (flat, floor).
    pub line2: Option<String>,
    /// City or town.
    pub city: String,
    /// State or region, where the country has them.
    pub state: Option<String>,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 code.
    pub country: String,
}

/// A create request as the client sent it, before the business rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrderInput {
    /// ISO 4217 code as sent.
    pub currency: String,
    /// The lines as sent.
    pub items: Vec<ItemInput>,
    /// The address as sent.
    pub shipping_address: AddressInput,
}

/// A new order that satisfies every rule: 1..=100 distinct products,
/// quantities 1..=10000, prices 0..=10^9 minor units, a total that fits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder {
    /// The currency of every price.
    pub currency: Currency,
    /// The lines, each product once.
    pub lines: Vec<OrderLine>,
    /// The sum of the line totals.
    pub total_amount: i64,
    /// Where the order goes.
    pub shipping_address: ShippingAddress,
}

impl NewOrder {
    /// Applies the business rules and reports every invalid field at once.
    ///
    /// Lines of one product are merged into the first (quantities added,
    /// at most 10000 in all) when they agree on the unit price; a product
    /// sent at two prices is refused: that has no obvious meaning, and an
    /// order holds one line per product.
    pub fn parse(input: &NewOrderInput) -> Result<NewOrder, Vec<FieldError>> {
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
        let mut lines: Vec<OrderLine> = Vec::with_capacity(input.items.len());
        for (i, item) in input.items.iter().enumerate() {
            let Some(line) = parse_line(i, item, &mut errors) else {
                continue;
            };
            match lines.iter_mut().find(|l| l.product_id == line.product_id) {
                None => lines.push(line),
                Some(first) if first.unit_price != line.unit_price => errors.push(FieldError::new(
                    format!("items[{i}].productId"),
                    "appears again with another unitPrice; send one price per product",
                )),
                Some(first) => merge(i, first, &line, &mut errors),
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

/// Adds `line` (at `items[i]`) to the `first` line of its product.
fn merge(i: usize, first: &mut OrderLine, line: &OrderLine, errors: &mut Vec<FieldError>) {
    let sum = i64::from(first.quantity.get()) + i64::from(line.quantity.get());
    match Quantity::new(sum) {
        Ok(quantity) => {
            first.quantity = quantity;
            first.line_total = first.line_total.saturating_add(line.line_total);
        }
        Err(e) => errors.push(FieldError::new(
            format!("items[{i}].quantity"),
            format!("with the earlier lines of this product: {e}"),
        )),
    }
}

fn parse_line(i: usize, item: &ItemInput, errors: &mut Vec<FieldError>) -> Option<OrderLine> {
    let before = errors.len();
    let field = |name: &str| format!("items[{i}].{name}");
    let chars = item.product_id.chars().count();
    if !check_text_with(|| field("productId"), &item.product_id, &[], errors) {
        // Named once: control characters.
    } else if chars == 0
        || chars > MAX_PRODUCT_ID_CHARS
        || item.product_id.trim() != item.product_id
    {
        errors.push(FieldError::new(
            field("productId"),
            format!("must be 1 to {MAX_PRODUCT_ID_CHARS} characters without surrounding spaces"),
        ));
    }
    let quantity = Quantity::new(item.quantity)
        .map_err(|e| errors.push(FieldError::new(field("quantity"), e.to_string())))
        .ok();
    if !(0..=MAX_UNIT_PRICE).contains(&item.unit_price) {
        errors.push(FieldError::new(
            field("unitPrice"),
            format!("must be between 0 and {MAX_UNIT_PRICE} minor units"),
        ));
    }
    let quantity = quantity.filter(|_| errors.len() == before)?;
    Some(OrderLine {
        product_id: item.product_id.clone(),
        quantity,
        unit_price: item.unit_price,
        line_total: money::line_total(item.unit_price, quantity.get())?,
    })
}

/// The message of a field that holds control characters.
pub const CONTROL_CHARACTERS: &str = "must not contain control characters";

/// Refuses control characters (NUL, escape, ...) in `value`, except those in
/// `allowed` (e.g. line breaks in a free-text reason). PostgreSQL refuses
/// NUL in text, and no field here has a use for the others. True when clean.
pub fn check_text(
    field: &str,
    value: &str,
    allowed: &[char],
    errors: &mut Vec<FieldError>,
) -> bool {
    check_text_with(|| field.to_owned(), value, allowed, errors)
}

/// [`check_text`], the field's name made only for an error (a create
/// checks a dozen fields).
fn check_text_with(
    field: impl FnOnce() -> String,
    value: &str,
    allowed: &[char],
    errors: &mut Vec<FieldError>,
) -> bool {
    let clean = !value
        .chars()
        .any(|c| c.is_control() && !allowed.contains(&c));
    if !clean {
        errors.push(FieldError::new(field(), CONTROL_CHARACTERS));
    }
    clean
}

fn parse_address(input: &AddressInput, errors: &mut Vec<FieldError>) -> ShippingAddress {
    // Lengths count the text as sent (the OpenAPI document's maxLength);
    // the stored value is trimmed.
    let field = |name: &str| format!("shippingAddress.{name}");
    let mut required = |name: &str, value: &str| {
        if check_text_with(|| field(name), value, &[], errors)
            && (value.trim().is_empty() || value.chars().count() > MAX_ADDRESS_FIELD_CHARS)
        {
            errors.push(FieldError::new(
                field(name),
                format!("is required, at most {MAX_ADDRESS_FIELD_CHARS} characters"),
            ));
        }
        value.trim().to_owned()
    };
    let name = required("name", &input.name);
    let line1 = required("line1", &input.line1);
    let city = required("city", &input.city);
    let postal_code = required("postalCode", &input.postal_code);
    let country = input.country.clone();
    if check_text("shippingAddress.country", &country, &[], errors)
        && (country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()))
    {
        errors.push(FieldError::new(
            "shippingAddress.country",
            "must be a two-letter ISO 3166-1 code in upper case, e.g. US",
        ));
    }
    let mut optional = |name: &str, value: &Option<String>| {
        let raw = value.as_deref()?;
        if check_text_with(|| field(name), raw, &[], errors)
            && raw.chars().count() > MAX_ADDRESS_FIELD_CHARS
        {
            errors.push(FieldError::new(
                field(name),
                format!("must be at most {MAX_ADDRESS_FIELD_CHARS} characters"),
            ));
        }
        Some(raw.trim().to_owned()).filter(|v| !v.is_empty())
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

#[cfg(test)]
mod tests;
