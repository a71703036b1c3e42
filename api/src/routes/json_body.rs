//! A JSON response body serialized straight to bytes with serde, where
//! poem-openapi's `Json` first builds a `serde_json::Value` tree (one
//! allocation per key and value) and then serializes that. The document is
//! the same: the schema is still `T`'s (`poem_openapi::types::Type`), and a
//! test holds the two serializations equal for every body that uses this.

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::ApiResponse;
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use serde::Serialize;

/// A response body of type `T`, documented by `T`'s schema and written
/// by `T`'s `Serialize`.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

const CONTENT_TYPE: &str = "application/json; charset=utf-8";

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = CONTENT_TYPE;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Serialize + Send> IntoResponse for JsonBody<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => {
                let mut resp = Response::from(bytes);
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
                resp
            }
            // Only a map with non-string keys fails; no body here has one.
            Err(err) => {
                tracing::error!(error = %err, "Serialising a response body failed.");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// As a handler's whole answer: 200 with the body (like poem-openapi's `Json`).
impl<T: Type + Serialize + Send> ApiResponse for JsonBody<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: CONTENT_TYPE,
                    schema: T::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// `DateTime` as poem-openapi writes it (`to_rfc3339`: `+00:00`, not `Z`).
pub fn rfc3339<S: serde::Serializer>(
    at: &chrono::DateTime<chrono::Utc>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(&at.to_rfc3339())
}

/// An optional `DateTime` as poem-openapi writes it.
pub fn rfc3339_opt<S: serde::Serializer>(
    at: &Option<chrono::DateTime<chrono::Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
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
}
