//! `/health/live`, `/health/ready` (database session, broker, publisher,
//! consumer) and
//! `/metrics` on RELAY_PORT.

use crate::context::RelayContext;
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

/// The verdict of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Ok,
    /// Not in use (the consumer with `CONSUMER_ENABLED=false`).
    Disabled,
    /// Failing, with what an operator needs to know.
    Failing(String),
}

impl Check {
    pub fn passes(&self) -> bool {
        !matches!(self, Check::Failing(_))
    }

    pub fn text(&self) -> String {
        match self {
            Check::Ok => "ok".to_owned(),
            Check::Disabled => "disabled".to_owned(),
            Check::Failing(why) => why.clone(),
        }
    }
}

fn database_check(ctx: &RelayContext) -> Check {
    if ctx.session_ok.load(Ordering::Relaxed) {
        Check::Ok
    } else if ctx.publishing.is_stalled() {
        Check::Failing("session closed: shards given back while the broker is unreachable".into())
    } else {
        Check::Failing("no database session".into())
    }
}

async fn broker_check(ctx: &RelayContext) -> Check {
    match ctx.producers.broker_answers().await {
        Ok(()) => Check::Ok,
        Err(why) => {
            // The client's text goes to the log, not into the body.
            tracing::warn!(error = %why, "Readiness: the broker does not answer.");
            Check::Failing("unavailable".into())
        }
    }
}

fn publisher_check(ctx: &RelayContext) -> Check {
    if ctx.publishing.is_stalled() {
        return Check::Failing(format!(
            "stalled: no send acknowledged for {} s or more; shards given back",
            ctx.settings.publish_stall.as_secs()
        ));
    }
    match ctx.publishing.failing_for() {
        Some(failing) if failing >= Duration::from_secs(5) => {
            Check::Failing(format!("failing for {} s", failing.as_secs()))
        }
        _ => Check::Ok,
    }
}

fn consumer_check(ctx: &RelayContext) -> Check {
    if !ctx.settings.consumer.enabled {
        return Check::Disabled;
    }
    if !ctx.consumer.is_running() {
        return Check::Failing("not running".into());
    }
    let stuck = ctx.consumer.stuck(ctx.settings.consumer.stuck_after);
    if stuck.is_empty() {
        Check::Ok
    } else {
        Check::Failing(format!("stuck: {}", stuck.join("; ")))
    }
}

/// Ready when the relay's database session is open, the broker answers a
/// metadata request within two seconds, its sends are acknowledged (not
/// failing for 5 s, not stalled past `OUTBOX_PUBLISH_STALL_SECS`), and no
/// consumer partition has been retrying one event for longer than
/// `CONSUMER_STUCK_SECS` (those are named).
#[handler]
pub async fn ready(ctx: Data<&Arc<RelayContext>>) -> Response {
    let checks = [
        ("database", database_check(&ctx)),
        ("broker", broker_check(&ctx).await),
        ("publisher", publisher_check(&ctx)),
        ("consumer", consumer_check(&ctx)),
    ];
    let ok = checks.iter().all(|(_, check)| check.passes());
    let details: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|(name, check)| ((*name).to_owned(), check.text().into()))
        .collect();
    let body = Json(json!({
        "status": if ok { "ready" } else { "not ready" },
        "checks": details,
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
