use super::{JsonLine, SpanJson};
use crate::telemetry::tests::Lines;

/// What the services log: lines outside any span, in a request's span
/// (fields of each kind, one written with `%`, one left empty and
/// recorded later, text that JSON must escape), in nested spans, and a
/// line of the `log` crate (as librdkafka's and tokio-postgres's come).
fn scenario() {
    let text = "a \"quoted\"\\ line\nand a\ttab, \u{1b}[31m, \u{8}\u{c}\r, \u{7f}, é, 日本";
    tracing::info!(port = 3003u64, "order-api listening.");
    let trace_id = uuid::Uuid::nil();
    let span = tracing::info_span!("request", method = "POST", route = %"/api/orders",
        trace_id = %trace_id, text, count = 3u64, delta = -2i64, ok = true, ratio = 0.25,
        nan = f64::NAN, order_id = tracing::field::Empty, late = tracing::field::Empty);
    let entered = span.enter();
    tracing::info!(status = 201, total = 12.5, "before the record");
    span.record("order_id", tracing::field::display("0190-abc"));
    span.record("late", 7u64);
    tracing::warn!(status = 500, elapsed_ms = 1.0e-3, error = ?Some(text), "Request failed.");
    let inner = tracing::info_span!("inner", shard = 3);
    inner.in_scope(|| tracing::error!(shard = 3, "nested"));
    drop(entered);
    // A span with no fields at first, recorded into later.
    let bare = tracing::info_span!("bare", order_id = tracing::field::Empty);
    bare.in_scope(|| tracing::info!("before"));
    bare.record("order_id", "x");
    bare.in_scope(|| tracing::info!("inside the bare span"));
    tracing_log::log::warn!(target: "librdkafka", "librdkafka: FAIL {text}");
}

/// Every line `scenario` logs, with `SpanJson` and `JsonLine` or with the
/// stock JSON formatter as the services used it before.
fn lines(ours: bool) -> Vec<String> {
    let _ = tracing_log::LogTracer::init();
    let lines = Lines::default();
    let builder = tracing_subscriber::fmt().with_writer(lines.clone());
    match ours {
        true => {
            let subscriber = builder.fmt_fields(SpanJson).event_format(JsonLine).finish();
            tracing::subscriber::with_default(subscriber, scenario)
        }
        false => {
            let subscriber = builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .finish();
            tracing::subscriber::with_default(subscriber, scenario)
        }
    }
    let bytes = lines.0.lock().unwrap().clone();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn parsed(line: &str) -> serde_json::Value {
    let mut value: serde_json::Value = serde_json::from_str(line).expect(line);
    let timestamp = value["timestamp"].take();
    let timestamp = timestamp.as_str().expect("a timestamp");
    // RFC 3339 in UTC with microseconds: 2026-11-29T11:15:06.272454Z.
    assert_eq!(timestamp.len(), 27, "{timestamp}");
    assert!(
        timestamp.ends_with('Z') && &timestamp[10..11] == "T",
        "{timestamp}"
    );
    value
}

#[test]
fn lines_read_the_same_as_the_stock_json_formatter() {
    let ours = lines(true);
    let stock = lines(false);
    assert_eq!(ours.len(), 7, "{ours:#?}");
    assert_eq!(ours.len(), stock.len());
    for (ours, stock) in ours.iter().zip(&stock) {
        assert_eq!(
            parsed(ours),
            parsed(stock),
            "\n ours: {ours}\nstock: {stock}"
        );
        assert!(ours.starts_with("{\"timestamp\":\""), "{ours}");
    }
    let failed = parsed(&ours[2]);
    assert_eq!(failed["span"]["order_id"], "0190-abc");
    assert_eq!(failed["span"]["late"], 7);
    assert!(failed["span"]["nan"].is_null());
    assert_eq!(failed["spans"].as_array().unwrap().len(), 1);
    assert_eq!(failed["level"], "WARN");
    assert_eq!(
        parsed(&ours[1])["span"].get("order_id"),
        None,
        "not recorded yet"
    );
    assert_eq!(parsed(&ours[3])["spans"][1]["name"], "inner");
    assert_eq!(parsed(&ours[6])["target"], "librdkafka");
    assert_eq!(parsed(&ours[0]).get("span"), None, "outside any span");
}

#[test]
fn strings_are_escaped_as_serde_json_escapes_them() {
    let specials = [
        "\"", "\\", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{0}", "\u{1b}", "\u{1f}",
    ];
    let others = [" ", "~", "\u{7f}", "é", "日本", "\u{1f600}"];
    for len in 0..20 {
        let plain: String = "abcdefghijklmnopqrstuvwxyz".chars().take(len).collect();
        for c in specials.iter().chain(&others) {
            for text in [
                format!("{plain}{c}"),
                format!("{c}{plain}"),
                format!("{plain}{c}{plain}{c}{plain}"),
            ] {
                let mut ours = String::new();
                super::quoted_str(&mut ours, &text);
                assert_eq!(ours, serde_json::to_string(&text).unwrap(), "{text:?}");
            }
        }
    }
}

#[test]
fn timestamps_read_as_rfc3339_with_microseconds() {
    use chrono::{DateTime, SecondsFormat, Utc};
    use std::time::{Duration, UNIX_EPOCH};
    let at = |micros: u64| UNIX_EPOCH + Duration::from_micros(micros);
    // The same second twice (the cached text), the next, another day.
    let instants = [
        at(0),
        at(1),
        at(1_795_961_350_123_456),
        at(1_795_961_350_999_999),
        at(1_795_961_351_000_000),
        at(1_709_251_199_999_999),
        at(951_782_400_000_007),
        at(1_795_961_350_000_010),
    ];
    for instant in instants {
        let mut ours = String::new();
        super::timestamp(&mut ours, instant).unwrap();
        let expected = DateTime::<Utc>::from(instant).to_rfc3339_opts(SecondsFormat::Micros, true);
        assert_eq!(ours, expected);
    }
}

/// A span's fields are formatted in a scratch text first; when that is in
/// use (tracing does not dispatch from inside a subscriber, so only if
/// something else held it), they are written directly, the same.
#[test]
fn span_fields_read_the_same_without_the_scratch_text() {
    let run = |hold_scratch: bool| {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .fmt_fields(SpanJson)
            .event_format(JsonLine)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            super::SCRATCH.with(|scratch| {
                let _held = hold_scratch.then(|| scratch.borrow_mut());
                let span = tracing::info_span!(
                    "request",
                    method = "GET",
                    count = 2u64,
                    text = "a \"b\"",
                    order_id = tracing::field::Empty
                );
                span.record("order_id", "0190-abc");
                span.in_scope(|| tracing::info!("inside"));
            });
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let logged: Vec<serde_json::Value> = text.lines().map(parsed).collect();
        logged
    };
    let expected = serde_json::json!({"method": "GET", "count": 2, "text": "a \"b\"",
        "order_id": "0190-abc", "name": "request"});
    for hold_scratch in [false, true] {
        let logged = run(hold_scratch);
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0]["span"], expected, "scratch held: {hold_scratch}");
    }
}
