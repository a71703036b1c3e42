//! The request's log context in both formats, and the in-memory sink the
//! formatters' tests write to.

use super::{JsonLine, RequestLog, SpanJson, TextLine, tag_order};
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// The log's lines, kept in memory.
#[derive(Clone, Default)]
pub(super) struct Lines(pub(super) Arc<Mutex<Vec<u8>>>);

impl Lines {
    pub(super) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// An order id, tagged halfway through the request.
fn order() -> uuid::Uuid {
    "0190f3b2-7c4e-7a3d-9b1e-2f6a8c0d4e5f".parse().unwrap()
}

/// A request's lines as the API logs them now: in its log context, with
/// the order id tagged halfway, a span opened inside, and lines outside.
fn in_context() {
    tracing::info!("outside");
    RequestLog::new("POST", "/api/orders", TRACE_ID.to_owned()).sync_scope(|| {
        tracing::info!("before the order");
        tag_order(order());
        tracing::info!(status = 201, "Order placed.");
        tracing::info_span!("inner", shard = 3).in_scope(|| tracing::warn!("nested"));
    });
    tracing::info!("outside again");
}

/// The same lines as the API logged them before: in a `request` span.
fn in_span() {
    tracing::info!("outside");
    let span = tracing::info_span!(
        "request",
        method = "POST",
        route = "/api/orders",
        trace_id = TRACE_ID,
        order_id = tracing::field::Empty
    );
    span.in_scope(|| {
        tracing::info!("before the order");
        span.record("order_id", tracing::field::display(order()));
        tracing::info!(status = 201, "Order placed.");
        tracing::info_span!("inner", shard = 3).in_scope(|| tracing::warn!("nested"));
    });
    tracing::info!("outside again");
}

/// `scenario`'s lines, JSON (ours or the stock formatter) or text (ours or
/// the stock "full" format without colours).
fn logged(scenario: fn(), json: bool, stock: bool) -> String {
    let lines = Lines::default();
    let builder = tracing_subscriber::fmt()
        .with_writer(lines.clone())
        .with_ansi(false);
    match (json, stock) {
        (true, false) => {
            let subscriber = builder.fmt_fields(SpanJson).event_format(JsonLine).finish();
            tracing::subscriber::with_default(subscriber, scenario);
        }
        (true, true) => {
            let subscriber = builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .finish();
            tracing::subscriber::with_default(subscriber, scenario);
        }
        (false, false) => {
            let subscriber = builder.event_format(TextLine).finish();
            tracing::subscriber::with_default(subscriber, scenario);
        }
        (false, true) => tracing::subscriber::with_default(builder.finish(), scenario),
    }
    lines.text()
}

/// The lines without their timestamps (JSON parsed).
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).expect(line);
            value.as_object_mut().unwrap().remove("timestamp");
            value
        })
        .collect()
}

#[test]
fn a_request_s_json_lines_read_as_in_its_span() {
    let ours = json_lines(&logged(in_context, true, false));
    let before = json_lines(&logged(in_span, true, true));
    assert_eq!(ours.len(), 5);
    assert_eq!(ours, before);
    let request = serde_json::json!({"method": "POST", "route": "/api/orders",
        "trace_id": TRACE_ID, "order_id": order().to_string(), "name": "request"});
    assert_eq!(ours[2]["span"], request);
    assert_eq!(ours[2]["spans"], serde_json::json!([request]));
    assert_eq!(ours[1]["span"].get("order_id"), None, "not tagged yet");
    assert_eq!(ours[3]["spans"][1]["name"], "inner");
    assert_eq!(ours[0].get("span"), None);
    assert_eq!(ours[4].get("span"), None, "after the request");
}

#[test]
fn a_request_s_text_lines_read_as_in_its_span() {
    // Each line from its level on (the timestamps differ).
    let cut = |text: String| -> Vec<String> {
        text.lines()
            .map(|l| l.split_once(' ').unwrap().1.to_owned())
            .collect()
    };
    let ours = cut(logged(in_context, false, false));
    let before = cut(logged(in_span, false, true));
    let request = format!("request{{method=POST route=/api/orders trace_id={TRACE_ID}");
    let target = "order_shared::telemetry::tests";
    let expected = [
        format!(" INFO {target}: outside"),
        format!(" INFO {request}}}: {target}: before the order"),
        format!(
            " INFO {request} order_id={}}}: {target}: Order placed. status=201",
            order()
        ),
        format!(
            " WARN {request} order_id={}}}:inner{{shard=3}}: {target}: nested",
            order()
        ),
        format!(" INFO {target}: outside again"),
    ];
    assert_eq!(ours, expected);
    // The stock format quotes the span's string fields; the rest is the same.
    assert_eq!(ours.len(), before.len());
    for (ours, before) in ours.iter().zip(&before) {
        assert_eq!(*ours, before.replace('"', ""));
    }
}
