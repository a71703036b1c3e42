//! What a create's logging costs under `LOG_FORMAT=json` at `info`, with
//! the stock JSON formatter (as the services used it before) and with
//! `SpanJson` + `JsonLine`: a span as the API opened one per request until
//! the twenty-sixth pass (a consumed event still gets one: four fields,
//! polled five times, the order id recorded into it), its one `info` line
//! ("Order placed.", five fields) and a `debug` line filtered out; written
//! to a sink, so no system call is counted. Not a test; prints ns per
//! request.
//! `cargo run --release -p order-shared --example span_cost [ROUNDS=5]`

use order_shared::telemetry::{JsonLine, SpanJson};
use std::time::Instant;
use tracing_subscriber::EnvFilter;

const REQUESTS: u32 = 200_000;

fn request(trace_id: uuid::Uuid) {
    let span = tracing::info_span!("request", method = "POST", route = "/api/orders",
        trace_id = %trace_id, order_id = tracing::field::Empty);
    for _ in 0..5 {
        let _polled = span.enter();
    }
    let _entered = span.enter();
    span.record("order_id", tracing::field::display(trace_id));
    tracing::info!(order_id = %trace_id, user_id = "bench-7", total_amount = 5998u64,
        currency = "EUR", "Order placed.");
    tracing::debug!(status = 201, "Request served.");
}

/// ns per request with the given subscriber.
fn run(subscriber: impl tracing::Subscriber + Send + Sync + 'static) -> f64 {
    tracing::subscriber::with_default(subscriber, || {
        let trace_id = uuid::Uuid::new_v4();
        let started = Instant::now();
        for _ in 0..REQUESTS {
            request(std::hint::black_box(trace_id));
        }
        started.elapsed().as_nanos() as f64 / f64::from(REQUESTS)
    })
}

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let builder = || {
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("info"))
            .with_writer(std::io::sink)
    };
    println!("round  stock JSON  SpanJson + JsonLine  (ns per request)");
    for round in 1..=rounds {
        let stock = run(builder()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .finish());
        let ours = run(builder()
            .fmt_fields(SpanJson)
            .event_format(JsonLine)
            .finish());
        println!("{round:>5}  {stock:>10.0}  {ours:>19.0}");
    }
}
