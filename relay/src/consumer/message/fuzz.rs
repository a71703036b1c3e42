//! Property tests of the inbound parser: whatever the bytes, it answers
//! `Ok` or a typed `ParseError` (a dead letter), never a panic; truncated,
//! oversized, wrong-typed, deeply nested, control-character and
//! unknown-version payloads are all errors.

use super::*;
use proptest::prelude::*;
use rdkafka::message::Header;

const ORDER: &str = "0190a6f0-0000-7000-8000-000000000001";
const KINDS: [TopicKind; 3] = [
    TopicKind::PaymentAuthorized,
    TopicKind::PaymentFailed,
    TopicKind::InventoryReserved,
];

fn valid() -> String {
    format!(
        r#"{{"eventId":"e-1","orderId":"{ORDER}","paymentId":"p-1","reason":"r","reservationId":"v","reservedAt":"2026-01-02T03:04:05Z"}}"#
    )
}

fn parse_all(body: &[u8], headers: Option<&OwnedHeaders>) -> Vec<Result<Inbound, ParseError>> {
    KINDS
        .iter()
        .map(|k| parse_message(*k, headers, Some(body), "payment.authorized", ""))
        .collect()
}

/// Every text the parser let through.
fn texts(inbound: &Inbound) -> Vec<&str> {
    let field = match &inbound.event {
        InboundEvent::PaymentAuthorized { payment_id, .. } => payment_id,
        InboundEvent::PaymentFailed { reason, .. } => reason,
        InboundEvent::InventoryReserved { reservation_id, .. } => reservation_id,
    };
    [
        Some(inbound.key.as_str()),
        Some(inbound.scope.as_str()),
        field.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Any JSON value, nested up to a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        for result in parse_all(&body, None) {
            let _ = result;
        }
    }

    #[test]
    fn every_truncation_of_a_valid_record_is_an_error(cut in 0usize..200) {
        let body = valid();
        let cut = cut.min(body.len() - 1);
        for result in parse_all(&body.as_bytes()[..cut], None) {
            prop_assert!(result.is_err(), "{cut} bytes parsed");
        }
    }

    #[test]
    fn any_value_in_any_field_is_ok_or_a_typed_error(
        field in prop::sample::select(vec!["eventId", "orderId", "paymentId", "reason", "reservationId", "reservedAt", "data", "specversion"]),
        value in any_json(),
    ) {
        let mut record: Value = serde_json::from_str(&valid()).unwrap();
        record[field] = value.clone();
        let body = serde_json::to_vec(&record).unwrap();
        // Whatever got through is clean text.
        for inbound in parse_all(&body, None).into_iter().flatten() {
            for text in texts(&inbound) {
                prop_assert!(!text.chars().any(char::is_control), "{text:?}");
            }
        }
        let wrong_type = matches!(value, Value::Array(_) | Value::Object(_) | Value::Bool(_));
        if wrong_type && ["paymentId", "reservationId", "orderId", "eventId"].contains(&field) {
            let errors = parse_all(&body, None).into_iter().filter(Result::is_err).count();
            prop_assert!(errors > 0, "{field} = {value} accepted everywhere");
        }
    }

    #[test]
    fn control_characters_in_any_text_field_are_refused(
        field in prop::sample::select(vec!["eventId", "paymentId", "reservationId", "reason"]),
        c in prop::sample::select(vec!['\u{0}', '\u{7}', '\u{1b}', '\u{7f}', '\u{9f}']),
    ) {
        let mut record: Value = serde_json::from_str(&valid()).unwrap();
        record[field] = Value::String(format!("a{c}b"));
        let body = serde_json::to_vec(&record).unwrap();
        let errors: Vec<_> = parse_all(&body, None).into_iter().filter_map(Result::err).collect();
        prop_assert!(!errors.is_empty());
        for e in errors {
            prop_assert_eq!(e, ParseError::ControlCharacters(field));
        }
    }
}

#[test]
fn oversized_deeply_nested_and_unknown_version_records_are_dead_letters() {
    let big = format!(
        r#"{{"eventId":"e","orderId":"{ORDER}","pad":"{}"}}"#,
        "x".repeat(MAX_PAYLOAD_BYTES)
    );
    for result in parse_all(big.as_bytes(), None) {
        assert_eq!(result.unwrap_err(), ParseError::TooLarge);
    }
    let deep = format!(
        r#"{{"eventId":"e","orderId":"{ORDER}","x":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    for result in parse_all(deep.as_bytes(), None) {
        assert!(matches!(result.unwrap_err(), ParseError::NotJson(_)));
    }
    let v2 = format!(r#"{{"specversion":"2.0","eventId":"e","orderId":"{ORDER}"}}"#);
    for result in parse_all(v2.as_bytes(), None) {
        assert_eq!(
            result.unwrap_err(),
            ParseError::UnknownVersion("2.0".into())
        );
    }
    let header = OwnedHeaders::new().insert(Header {
        key: "ce_specversion",
        value: Some("0.3"),
    });
    for result in parse_all(valid().as_bytes(), Some(&header)) {
        assert_eq!(
            result.unwrap_err(),
            ParseError::UnknownVersion("0.3".into())
        );
    }
    let ok = OwnedHeaders::new().insert(Header {
        key: "ce_specversion",
        value: Some("1.0"),
    });
    assert!(
        parse_all(valid().as_bytes(), Some(&ok))
            .iter()
            .all(Result::is_ok)
    );
    let nul_key = OwnedHeaders::new().insert(Header {
        key: "ce_id",
        value: Some("a\u{0}b"),
    });
    for result in parse_all(valid().as_bytes(), Some(&nul_key)) {
        assert_eq!(result.unwrap_err(), ParseError::ControlCharacters("ce_id"));
    }
}
