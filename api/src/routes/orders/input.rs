//! Turning a request into domain input: the new order (from items or from
//! the caller's cart, prices checked), the Idempotency-Key, the page cursor
//! and the text fields of a change.

use crate::problem::ApiError;
use crate::routes::wire::CreateOrderRequest;
use crate::upstream::http::{check_path_id, path_id_problem};
use crate::upstream::{CartClient, ProductClient};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use order_shared::db::orders::IdempotencyKey;
use order_shared::domain::{FieldError, ItemInput, NewOrder, NewOrderInput, OrderId, check_text};
use poem::Request;
use sha2::{Digest, Sha256};
use std::time::Duration;

const MAX_TEXT: usize = 100;
const MAX_REASON: usize = 500;

/// The caller's bearer token, forwarded to the cart service.
pub fn bearer_token(req: &Request) -> &str {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(7..))
        .unwrap_or_default()
}

/// Turns the request into a validated order (items or cart, then prices).
pub async fn new_order(
    products: &ProductClient,
    carts: &CartClient,
    bearer: &str,
    body: CreateOrderRequest,
) -> Result<NewOrder, ApiError> {
    let (items, cart_currency) = match (body.items, body.cart_id) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(vec![FieldError::new(
                "cartId",
                "give either items or cartId, not both",
            )]));
        }
        (Some(items), None) => (items.into_iter().map(ItemInput::from).collect(), None),
        (None, Some(cart_id)) => {
            check_path_id("cartId", &cart_id).map_err(|e| ApiError::validation(vec![e]))?;
            let cart = carts.cart(&cart_id, bearer).await?;
            let items = cart
                .items
                .into_iter()
                .map(|i| ItemInput {
                    product_id: i.product_id,
                    quantity: i.quantity,
                    unit_price: i.unit_price,
                })
                .collect();
            (items, cart.currency)
        }
        (None, None) => (Vec::new(), None),
    };
    let currency = body.currency.or(cart_currency).unwrap_or_default();
    let input = NewOrderInput {
        currency,
        items,
        shipping_address: body.shipping_address.unwrap_or_default().into(),
    };
    let order = NewOrder::parse(&input).map_err(ApiError::validation)?;
    // Product ids become a path of the product service: no dot segments.
    let bad_ids: Vec<FieldError> = order
        .lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let why = path_id_problem(&l.product_id)?;
            Some(FieldError::new(format!("items[{i}].productId"), why))
        })
        .collect();
    if !bad_ids.is_empty() {
        return Err(ApiError::validation(bad_ids));
    }
    products
        .check_prices(order.currency.as_str(), &input.items)
        .await?;
    Ok(order)
}

/// The framework checks the header's text (1 to 255 visible ASCII
/// characters); a value that is not text at all reaches the handler as
/// absent, so a header that was `sent` without a `key` is refused here.
pub fn check_idempotency_key(sent: bool, key: Option<&str>) -> Result<(), ApiError> {
    if sent && key.is_none() {
        return Err(ApiError::validation(vec![FieldError::new(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        )]));
    }
    Ok(())
}

/// The key with the hash of the canonical order it stands for.
pub fn idempotency_key<'a>(
    key: &'a str,
    order: &NewOrder,
    ttl: Duration,
) -> Result<IdempotencyKey<'a>, ApiError> {
    let canonical = serde_json::to_vec(order).map_err(|e| ApiError::internal_from(&e))?;
    let ttl = chrono::Duration::from_std(ttl).map_err(|e| ApiError::internal_from(&e))?;
    Ok(IdempotencyKey {
        key,
        request_hash: Sha256::digest(&canonical).into(),
        expires_at: chrono::Utc::now() + ttl,
    })
}

/// The cursor of the page after `id`.
pub fn encode_cursor(id: OrderId) -> String {
    URL_SAFE_NO_PAD.encode(id.as_uuid().as_bytes())
}

/// The order id a cursor stands for.
pub fn decode_cursor(cursor: &str) -> Result<OrderId, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| uuid::Uuid::from_slice(&bytes).ok())
        .map(OrderId::from)
        .ok_or_else(|| {
            ApiError::validation(vec![FieldError::new(
                "cursor",
                "is not a cursor returned by this API",
            )])
        })
}

/// A required text field of 1 to 100 characters, trimmed.
/// The length counts the text as sent; the value kept is trimmed.
pub fn text_field(name: &str, value: &str, errors: &mut Vec<FieldError>) -> String {
    let len = value.chars().count();
    let value = value.trim();
    if check_text(name, value, &[], errors) && (value.is_empty() || len > MAX_TEXT) {
        errors.push(FieldError::new(
            name,
            format!("is required, 1 to {MAX_TEXT} characters"),
        ));
    }
    value.to_owned()
}

/// Control characters a free-text reason may hold: line breaks and tabs.
const REASON_ALLOWS: &[char] = &['\n', '\r', '\t'];

/// An optional cancellation reason: trimmed, empty is none, at most 500
/// characters, line breaks and tabs its only control characters.
pub fn cancel_reason(reason: Option<String>) -> Result<Option<String>, ApiError> {
    let mut errors = Vec::new();
    if let Some(r) = &reason
        && !check_text("reason", r, REASON_ALLOWS, &mut errors)
    {
        return Err(ApiError::validation(errors));
    }
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON)
    {
        return Err(ApiError::validation(vec![FieldError::new(
            "reason",
            format!("must be at most {MAX_REASON} characters"),
        )]));
    }
    Ok(reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let id = OrderId::generate();
        assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        assert!(decode_cursor("not a cursor").is_err());
        assert!(decode_cursor("AAAA").is_err());
    }

    #[test]
    fn a_sent_but_unreadable_key_is_refused() {
        assert!(check_idempotency_key(false, None).is_ok());
        assert!(check_idempotency_key(true, Some("k-1")).is_ok());
        assert!(check_idempotency_key(true, None).is_err());
    }
}
