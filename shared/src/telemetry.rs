//! Logs (tracing, JSON or text) and the Prometheus recorder.

use crate::config::LogFormat;
use crate::domain::OrderStatus;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

mod json;
mod request;
mod text;
mod writer;
pub use json::{JsonLine, SpanJson};
pub use request::{RequestLog, tag_order};
pub use text::TextLine;
pub use writer::flush_logs;

/// Installs the global tracing subscriber; `RUST_LOG` filters (default `info`).
/// Lines go to stderr through a writer thread of their own (`writer.rs`);
/// [`flush_logs`] writes what it holds, and a panic does before its
/// message. A second call (tests start several apps in one process) is a
/// no-op.
pub fn init_tracing(format: LogFormat) {
    let Some(writer) = writer::stderr_writer() else {
        install_subscriber(format, std::io::stderr);
        return;
    };
    if install_subscriber(format, writer) {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush_logs();
            previous(info);
        }));
    }
}

/// Whether the subscriber was installed (not already there).
fn install_subscriber<W>(format: LogFormat, writer: W) -> bool
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .fmt_fields(SpanJson)
            .event_format(JsonLine)
            .try_init()
            .is_ok(),
        LogFormat::Text => builder
            .with_ansi(false)
            .event_format(TextLine)
            .try_init()
            .is_ok(),
    }
}

static PROMETHEUS: OnceLock<Result<PrometheusHandle, MetricsError>> = OnceLock::new();

/// Latency buckets (seconds) for every `*_seconds` histogram: 0.5 ms .. 30 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Finer buckets for the relay's commit -> ack latency, its own share
/// (commit -> send call) and its claim statement, whose targets are in
/// milliseconds (the benchmark reads p50/p99 from them).
const PUBLISH_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.012, 0.015, 0.02, 0.025, 0.03, 0.04,
    0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The Prometheus recorder could not be set up.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot set up the Prometheus recorder: {0}")]
pub struct MetricsError(String);

fn install() -> Result<PrometheusHandle, MetricsError> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("outbox_publish_latency_seconds".into()),
            PUBLISH_LATENCY_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("outbox_send_delay_seconds".into()),
                PUBLISH_LATENCY_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("outbox_claim_seconds".into()),
                PUBLISH_LATENCY_BUCKETS,
            )
        })
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS))
        .map_err(|e| MetricsError(e.to_string()))?;
    builder
        .install_recorder()
        .map_err(|e| MetricsError(e.to_string()))
}

/// Installs the process-wide Prometheus recorder once and returns its
/// handle; the same answer on every later call. An error (buckets refused,
/// another recorder installed) is a start-up error, never a silent
/// recorder without the buckets.
pub fn prometheus() -> Result<PrometheusHandle, MetricsError> {
    PROMETHEUS.get_or_init(install).clone()
}

/// Counts one order status change, `order_transitions_total{from,to}`: the
/// one place for changes asked through the API and by consumed events.
/// Call it after the change's transaction committed.
pub fn count_transition(from: OrderStatus, to: OrderStatus) {
    metrics::counter!("order_transitions_total", "from" => from.as_str(), "to" => to.as_str())
        .increment(1);
}

#[cfg(test)]
mod tests;
