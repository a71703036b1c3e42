//! `/health/live`, `/health/ready` (database session and broker) and
//! `/metrics` on RELAY_PORT.

use crate::startup::RelayContext;
use metrics_exporter_prometheus::PrometheusHandle;
use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{IntoResponse, Response, handler};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[handler]
pub fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the relay's database session is open, the broker answers a
/// metadata request within two seconds, and no consumer partition has been
/// retrying one event for longer than `CONSUMER_STUCK_SECS` (those are
/// named).
#[handler]
pub async fn ready(ctx: Data<&Arc<RelayContext>>) -> Response {
    let database = if ctx.session_ok.load(Ordering::Relaxed) {
        "ok".to_owned()
    } else {
        "no database session".to_owned()
    };
    let (_, producer) = ctx.producers.get();
    let probe = tokio::task::spawn_blocking(move || {
        use rdkafka::producer::Producer;
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
            .map(|_| ())
    })
    .await;
    let broker = match probe {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("unreachable: {e}"),
        Err(e) => format!("probe failed: {e}"),
    };
    let stuck = ctx.consumer.stuck(ctx.settings.consumer.stuck_after);
    let (consumer, consumer_ok) = if !ctx.settings.consumer.enabled {
        ("disabled".to_owned(), true)
    } else if !ctx.consumer.is_running() {
        ("not running".to_owned(), false)
    } else if stuck.is_empty() {
        ("ok".to_owned(), true)
    } else {
        (format!("stuck: {}", stuck.join("; ")), false)
    };
    let ok = database == "ok" && broker == "ok" && consumer_ok;
    let body = Json(json!({
        "status": if ok { "ready" } else { "not ready" },
        "checks": { "database": database, "broker": broker, "consumer": consumer },
    }));
    if ok {
        body.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

#[handler]
pub fn metrics(handle: Data<&PrometheusHandle>) -> Response {
    handle
        .render()
        .with_content_type("text/plain; version=0.0.4; charset=utf-8")
        .into_response()
}
