//! Request bodies documented by their full schema but parsed without the
//! framework's validators, so that the handler (and the domain behind it)
//! reports every invalid field at once, each with its JSON path. JSON
//! syntax and types are still checked here (serde), and unknown fields are
//! ignored.

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, Type};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::borrow::Cow;
use std::marker::PhantomData;

/// The raw-value methods of `Type` for a wrapper that is its own raw value.
macro_rules! raw_self {
    () => {
        fn as_raw_value(&self) -> Option<&Self::RawValueType> {
            Some(self)
        }

        fn raw_element_iter<'a>(
            &'a self,
        ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
            Box::new(std::iter::once(self))
        }
    };
}

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
