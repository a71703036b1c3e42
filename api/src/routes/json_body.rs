//! A JSON response body serialized straight to bytes with serde, where
//! poem-openapi's `Json` first builds a `serde_json::Value` tree (one
//! allocation per key and value) and then serializes that. The document is
//! the same: the schema is still `T`'s (`poem_openapi::types::Type`), and a
//! test (`json_parity`) holds the two serializations equal for every body
//! that uses this.

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

/// The first allocation of a body's bytes.
const BODY_CAPACITY: usize = 1024;

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
        // An order is 0.6-1 KB: one allocation where `to_vec`'s 128 bytes
        // grew three times.
        let mut bytes = Vec::with_capacity(BODY_CAPACITY);
        match serde_json::to_writer(&mut bytes, &self.0) {
            Ok(()) => {
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
