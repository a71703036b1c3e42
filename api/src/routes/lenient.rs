//! Request bodies documented by their full schema but parsed without the
//! framework's validators, so that the handler (and the domain behind it)
//! reports every invalid field at once, each with its JSON path. JSON
//! syntax and types are still checked here (serde), and unknown fields are
//! ignored.

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::error::ParseRequestPayloadError;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, Type};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::borrow::Cow;
use std::marker::PhantomData;

/// A body parsed (serde) as `T` and documented as `S` (by default `T`
/// itself; the create body documents a `oneOf` of its two shapes).
#[derive(Debug, Clone)]
pub struct Lenient<T, S = T>(pub T, PhantomData<S>);

impl<T: Send + Sync, S: Type> Type for Lenient<T, S> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        S::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        S::schema_ref()
    }

    fn register(registry: &mut Registry) {
        S::register(registry);
    }

    raw_self!();
}

impl<T: DeserializeOwned + Send + Sync, S: Type> ParseFromJSON for Lenient<T, S> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        serde_json::from_value(value.unwrap_or_default())
            .map(|parsed| Lenient(parsed, PhantomData))
            .map_err(|e| ParseError::custom(e.to_string()))
    }
}

/// A JSON request body parsed (serde) straight into `T` and documented as
/// `S`: what `Json<Lenient<T, S>>` does, without the `serde_json::Value`
/// tree poem-openapi's `Json` builds first (one allocation per key and
/// value, then taken apart again).
#[derive(Debug, Clone)]
pub struct LenientJson<T, S = T>(pub T, PhantomData<S>);

impl<T: Send, S: Type> Payload for LenientJson<T, S> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    /// `application/json` or any `application/*+json`, like `Json`.
    fn check_content_type(content_type: &str) -> bool {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        let Some(subtype) = essence
            .get(..12)
            .filter(|t| t.eq_ignore_ascii_case("application/"))
            .map(|_| &essence[12..])
        else {
            return false;
        };
        subtype.eq_ignore_ascii_case("json")
            || subtype
                .rsplit_once('+')
                .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        S::schema_ref()
    }

    fn register(registry: &mut Registry) {
        S::register(registry);
    }
}

impl<T: DeserializeOwned + Send, S: Type> ParsePayload for LenientJson<T, S> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = Vec::<u8>::from_request(request, body).await?;
        serde_json::from_slice(&data)
            .map(|parsed| LenientJson(parsed, PhantomData))
            .map_err(|err| {
                ParseRequestPayloadError {
                    reason: err.to_string(),
                }
                .into()
            })
    }
}

poem_openapi::impl_apirequest_for_payload!(LenientJson<T, S>, T: DeserializeOwned + Send, S: Type);

/// An optional body whose JSON `null` means "no body", as an empty body
/// does; documented as a nullable `T`.
#[derive(Debug, Clone)]
pub struct OrNull<T>(pub Option<T>);

impl<T: Type> Type for OrNull<T> {
    const IS_REQUIRED: bool = false;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        format!("Nullable<{}>", T::name()).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            nullable: true,
            all_of: vec![T::schema_ref()],
            ..MetaSchema::ANY
        }))
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    raw_self!();
}

impl<T: ParseFromJSON> ParseFromJSON for OrNull<T> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::Null => Ok(OrNull(None)),
            value => T::parse_from_json(Some(value))
                .map(|parsed| OrNull(Some(parsed)))
                .map_err(ParseError::propagate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LenientJson;
    use poem_openapi::payload::Payload;

    #[test]
    fn json_content_types_are_told_like_poem_openapi_does() {
        type Body = LenientJson<serde_json::Value>;
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(Body::check_content_type(ok), "{ok}");
        }
        for bad in [
            "text/json",
            "application/xml",
            "application/jsonx",
            "json",
            "",
        ] {
            assert!(!Body::check_content_type(bad), "{bad}");
        }
    }
}
