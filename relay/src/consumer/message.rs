//! Reading one inbound record: the topic's meaning, the idempotency key and
//! its scope, and the event it carries; or the data error that sends the
//! record to the dead-letter topic.

use chrono::{DateTime, Utc};
use order_shared::domain::{InboundEvent, OrderId};
use rdkafka::message::{Headers, OwnedHeaders};
use serde_json::Value;

/// Longest idempotency key or scope we store.
const MAX_KEY_LEN: usize = 200;
/// Largest record value read; a bigger one is dead-lettered unread.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Longest payment or reservation id kept.
const MAX_ID_LEN: usize = 200;
/// The CloudEvents version we understand.
const SPEC_VERSION: &str = "1.0";

/// The inbound topics' meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    PaymentAuthorized,
    PaymentFailed,
    InventoryReserved,
}

/// Why a record cannot be read: it goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message value")]
    Empty,
    #[error("value is not JSON: {0}")]
    NotJson(String),
    #[error("value is not a JSON object")]
    NotObject,
    #[error("no idempotency key: neither a ce_id header nor an eventId")]
    NoKey,
    #[error("idempotency key longer than {MAX_KEY_LEN} characters")]
    KeyTooLong,
    #[error("ce_source header longer than {MAX_KEY_LEN} characters")]
    SourceTooLong,
    #[error("no orderId")]
    NoOrderId,
    #[error("orderId is not a UUID")]
    BadOrderId,
    #[error("reservedAt is not an RFC 3339 time")]
    BadReservedAt,
    #[error("value is larger than {MAX_PAYLOAD_BYTES} bytes")]
    TooLarge,
    #[error("{0} holds control characters")]
    ControlCharacters(&'static str),
    #[error("{0} is longer than {MAX_ID_LEN} characters")]
    FieldTooLong(&'static str),
    #[error("{0} must be text")]
    WrongType(&'static str),
    #[error("CloudEvents specversion {0:?} is not {SPEC_VERSION}")]
    UnknownVersion(String),
}

/// A record read: where its key is unique, the key, and the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub scope: String,
    pub key: String,
    pub event: InboundEvent,
}

/// The text of `field` (at the top level or under `data`), trimmed: a
/// number counts as text; another type, or control characters, is an error.
fn text(payload: &Value, field: &'static str) -> Result<Option<String>, ParseError> {
    let pick = |v: &Value| match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err(ParseError::ControlCharacters(field))
        }
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(ParseError::WrongType(field)),
    };
    match pick(payload)? {
        Some(found) => Ok(Some(found)),
        None => payload.get("data").map_or(Ok(None), pick),
    }
}

/// An id field: text of at most [`MAX_ID_LEN`] characters.
fn id_text(payload: &Value, field: &'static str) -> Result<Option<String>, ParseError> {
    let id = text(payload, field)?;
    if id
        .as_ref()
        .is_some_and(|id| id.chars().count() > MAX_ID_LEN)
    {
        return Err(ParseError::FieldTooLong(field));
    }
    Ok(id)
}

/// The text value of header `name`, if present and UTF-8.
pub fn header_text<'a>(headers: Option<&'a OwnedHeaders>, name: &str) -> Option<&'a str> {
    headers?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The idempotency scope: the `ce_source` header when present, else the
/// topic without the environment's prefix (`payment.authorized`).
pub fn scope(ce_source: Option<&str>, topic: &str, prefix: &str) -> Result<String, ParseError> {
    match ce_source.map(str::trim).filter(|s| !s.is_empty()) {
        Some(source) if source.len() > MAX_KEY_LEN => Err(ParseError::SourceTooLong),
        Some(source) if source.chars().any(char::is_control) => {
            Err(ParseError::ControlCharacters("ce_source"))
        }
        Some(source) => Ok(source.to_owned()),
        None => Ok(topic.strip_prefix(prefix).unwrap_or(topic).to_owned()),
    }
}

/// Parses a record of a `kind` topic. Fields may sit at the top level or
/// under `data`; the key is the `ce_id` header, else the payload's `eventId`.
pub fn parse_message(
    kind: TopicKind,
    headers: Option<&OwnedHeaders>,
    payload: Option<&[u8]>,
    topic: &str,
    prefix: &str,
) -> Result<Inbound, ParseError> {
    let bytes = payload.filter(|p| !p.is_empty()).ok_or(ParseError::Empty)?;
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(ParseError::TooLarge);
    }
    // serde_json stops at 128 levels of nesting: deeper is "not JSON".
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ParseError::NotJson(e.to_string()))?;
    if !value.is_object() {
        return Err(ParseError::NotObject);
    }
    let version = header_text(headers, "ce_specversion")
        .map(str::to_owned)
        .or(value
            .get("specversion")
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)));
    if let Some(version) = version.filter(|v| v != SPEC_VERSION) {
        return Err(ParseError::UnknownVersion(version));
    }
    let key = match header_text(headers, "ce_id")
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        Some(key) => key.to_owned(),
        None => text(&value, "eventId")?.ok_or(ParseError::NoKey)?,
    };
    if key.len() > MAX_KEY_LEN {
        return Err(ParseError::KeyTooLong);
    }
    if key.chars().any(char::is_control) {
        return Err(ParseError::ControlCharacters("ce_id"));
    }
    let scope = scope(header_text(headers, "ce_source"), topic, prefix)?;
    let order_id = text(&value, "orderId")?
        .ok_or(ParseError::NoOrderId)?
        .parse::<OrderId>()
        .map_err(|_| ParseError::BadOrderId)?;
    let event = match kind {
        TopicKind::PaymentAuthorized => InboundEvent::PaymentAuthorized {
            order_id,
            payment_id: id_text(&value, "paymentId")?,
        },
        TopicKind::PaymentFailed => InboundEvent::PaymentFailed {
            order_id,
            reason: text(&value, "reason")?.map(|r| r.chars().take(500).collect()),
        },
        TopicKind::InventoryReserved => InboundEvent::InventoryReserved {
            order_id,
            reservation_id: id_text(&value, "reservationId")?,
            reserved_at: match text(&value, "reservedAt")? {
                None => None,
                Some(t) => Some(
                    DateTime::parse_from_rfc3339(&t)
                        .map_err(|_| ParseError::BadReservedAt)?
                        .with_timezone(&Utc),
                ),
            },
        },
    };
    Ok(Inbound { scope, key, event })
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Header;

    const ORDER: &str = "0190a6f0-0000-7000-8000-000000000001";
    const TOPIC: &str = "staging.payment.authorized";

    fn headers(pairs: &[(&str, &str)]) -> OwnedHeaders {
        pairs.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(*v),
            })
        })
    }

    fn parse(
        kind: TopicKind,
        h: Option<&OwnedHeaders>,
        body: &[u8],
    ) -> Result<Inbound, ParseError> {
        parse_message(kind, h, Some(body), TOPIC, "staging.")
    }

    #[test]
    fn the_ce_id_header_wins_over_the_event_id() {
        let body = format!(r#"{{"eventId":"e-1","orderId":"{ORDER}","paymentId":"p-9"}}"#);
        let h = headers(&[("ce_id", "ce-1")]);
        let inbound = parse(TopicKind::PaymentAuthorized, Some(&h), body.as_bytes()).unwrap();
        assert_eq!(inbound.key, "ce-1");
        assert_eq!(
            inbound.event,
            InboundEvent::PaymentAuthorized {
                order_id: ORDER.parse().unwrap(),
                payment_id: Some("p-9".into())
            }
        );
        let inbound = parse(TopicKind::PaymentAuthorized, None, body.as_bytes()).unwrap();
        assert_eq!(inbound.key, "e-1");
    }

    #[test]
    fn the_scope_is_the_source_else_the_topic_without_prefix() {
        let body = format!(r#"{{"eventId":"42","orderId":"{ORDER}"}}"#);
        let plain = parse(TopicKind::PaymentAuthorized, None, body.as_bytes()).unwrap();
        assert_eq!(plain.scope, "payment.authorized");
        let h = headers(&[("ce_source", "/payments")]);
        let sourced = parse(TopicKind::PaymentAuthorized, Some(&h), body.as_bytes()).unwrap();
        assert_eq!(sourced.scope, "/payments");
        assert_eq!(
            scope(None, "inventory.reserved", ""),
            Ok("inventory.reserved".into())
        );
        let long = "s".repeat(201);
        assert_eq!(
            scope(Some(&long), TOPIC, ""),
            Err(ParseError::SourceTooLong)
        );
    }

    #[test]
    fn fields_may_sit_under_data() {
        let body = format!(
            r#"{{"eventId":"e-2","data":{{"orderId":"{ORDER}","reason":"card declined"}}}}"#
        );
        let inbound = parse(TopicKind::PaymentFailed, None, body.as_bytes()).unwrap();
        assert_eq!(
            inbound.event,
            InboundEvent::PaymentFailed {
                order_id: ORDER.parse().unwrap(),
                reason: Some("card declined".into())
            }
        );
    }

    #[test]
    fn bad_messages_get_a_typed_reason() {
        let long_key = format!(r#"{{"eventId":"{}","orderId":"{ORDER}"}}"#, "k".repeat(201));
        let cases: [(&[u8], ParseError); 7] = [
            (b"", ParseError::Empty),
            (b"[1,2]", ParseError::NotObject),
            (
                br#"{"orderId":"0190a6f0-0000-7000-8000-000000000001"}"#,
                ParseError::NoKey,
            ),
            (long_key.as_bytes(), ParseError::KeyTooLong),
            (br#"{"eventId":"e"}"#, ParseError::NoOrderId),
            (br#"{"eventId":"e","orderId":"42"}"#, ParseError::BadOrderId),
            (
                br#"{"eventId":"e","orderId":"0190a6f0-0000-7000-8000-000000000001","reservedAt":"soon"}"#,
                ParseError::BadReservedAt,
            ),
        ];
        for (body, expected) in cases {
            let err = parse(TopicKind::InventoryReserved, None, body).unwrap_err();
            assert_eq!(err, expected);
        }
        let err = parse(TopicKind::PaymentAuthorized, None, b"{not json").unwrap_err();
        assert!(matches!(err, ParseError::NotJson(_)), "{err:?}");
        assert!(err.to_string().starts_with("value is not JSON"));
    }
}
