//! String parameters with a `pattern`, checked against a regex compiled
//! once. poem-openapi's `validator(pattern = ...)` compiles its regex on
//! every check (`Pattern::check` calls `Regex::new`, poem-openapi 5.1):
//! that cost 57 µs of API CPU per create sent with an `Idempotency-Key`
//! and 127 µs per page asked with a `cursor` (docs/benchmarks.md, seventh
//! pass). The schema documents the same `pattern`, `minLength` and
//! `maxLength`, and a refusal reads as the framework's did.

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromParameter, ParseResult, Type};
use regex::Regex;
use std::borrow::Cow;
use std::marker::PhantomData;

/// What a [`Patterned`] parameter accepts.
pub trait Shape: Send + Sync + 'static {
    const PATTERN: &'static str;
    const MIN_LENGTH: Option<usize> = None;
    const MAX_LENGTH: Option<usize> = None;
    /// [`Self::PATTERN`], compiled once (see `compiled!` below).
    fn regex() -> &'static Regex;
}

/// The `regex()` of a [`Shape`]: its pattern compiled on first use.
macro_rules! compiled {
    ($shape:ty) => {
        fn regex() -> &'static Regex {
            static REGEX: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
                Regex::new(<$shape as Shape>::PATTERN).expect("a Shape's pattern compiles")
            });
            &REGEX
        }
    };
}

/// `Idempotency-Key`: 1-255 printable ASCII characters, trailing blanks
/// allowed (RFC 9110 strips them).
#[derive(Debug, Clone)]
pub enum IdempotencyKey {}

impl Shape for IdempotencyKey {
    const PATTERN: &'static str = "^[\\x21-\\x7e]+[\\t ]*$";
    const MIN_LENGTH: Option<usize> = Some(1);
    const MAX_LENGTH: Option<usize> = Some(255);
    compiled!(IdempotencyKey);
}

/// A page's `cursor`: the `nextCursor` of the page before.
#[derive(Debug, Clone)]
pub enum Cursor {}

impl Shape for Cursor {
    const PATTERN: &'static str = "^[A-Za-z0-9_-]{21}[AQgw]$";
    compiled!(Cursor);
}

/// A `userId` filter: up to 255 characters, no control characters.
#[derive(Debug, Clone)]
pub enum UserIdFilter {}

impl Shape for UserIdFilter {
    const PATTERN: &'static str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
    const MAX_LENGTH: Option<usize> = Some(255);
    compiled!(UserIdFilter);
}

/// A string parameter that matched its [`Shape`].
#[derive(Debug, Clone)]
pub struct Patterned<S>(String, PhantomData<S>);

impl<S> Patterned<S> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl<S: Shape> Patterned<S> {
    /// The value, or what it breaks, worded as poem-openapi's validators.
    fn parse(value: &str) -> Result<Self, String> {
        let chars = value.chars().count();
        if let Some(min) = S::MIN_LENGTH.filter(|&min| chars < min) {
            return Err(format!("verification failed. minLength({min})"));
        }
        if let Some(max) = S::MAX_LENGTH.filter(|&max| chars > max) {
            return Err(format!("verification failed. maxLength({max})"));
        }
        if !S::regex().is_match(value) {
            return Err(format!("verification failed. pattern(\"{}\")", S::PATTERN));
        }
        Ok(Patterned(value.to_owned(), PhantomData))
    }
}

impl<S: Shape> Type for Patterned<S> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            pattern: Some(S::PATTERN.to_owned()),
            min_length: S::MIN_LENGTH,
            max_length: S::MAX_LENGTH,
            ..MetaSchema::new("string")
        }))
    }

    raw_self!();
}

impl<S: Shape> ParseFromParameter for Patterned<S> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse(value).map_err(ParseError::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<S: Shape>(value: &str) -> bool {
        Patterned::<S>::parse(value).is_ok()
    }

    #[test]
    fn each_shape_accepts_and_refuses_what_its_schema_says() {
        assert!(ok::<IdempotencyKey>("order-1 \t"));
        assert!(ok::<IdempotencyKey>(&"k".repeat(255)));
        for bad in ["", " lead", "a b", "caf\u{e9}", &"k".repeat(256)] {
            assert!(!ok::<IdempotencyKey>(bad), "{bad:?}");
        }
        assert!(ok::<Cursor>("AZaz09_-AZaz09_-AZaz0g"));
        for bad in ["abcd", "AZaz09_-AZaz09_-AZaz0b", "AZaz09_-AZaz09_-AZa=0A"] {
            assert!(!ok::<Cursor>(bad), "{bad:?}");
        }
        assert!(ok::<UserIdFilter>("alice"));
        assert!(ok::<UserIdFilter>(""));
        assert!(ok::<UserIdFilter>(&"\u{e9}".repeat(255)));
        for bad in ["a\u{0}b", "a\u{85}", &"u".repeat(256)] {
            assert!(!ok::<UserIdFilter>(bad), "{bad:?}");
        }
    }

    #[test]
    fn refusals_read_as_the_framework_validators_did() {
        let too_long = Patterned::<UserIdFilter>::parse(&"u".repeat(256)).unwrap_err();
        assert_eq!(too_long, "verification failed. maxLength(255)");
        let empty = Patterned::<IdempotencyKey>::parse("").unwrap_err();
        assert_eq!(empty, "verification failed. minLength(1)");
        let shape = Patterned::<Cursor>::parse("abcd").unwrap_err();
        assert_eq!(
            shape,
            "verification failed. pattern(\"^[A-Za-z0-9_-]{21}[AQgw]$\")"
        );
    }
}
