//! `/health/live` (no dependencies), `/health/ready` (the database) and
//! `/metrics` (Prometheus text format).

use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{IntoResponse, Response, handler};
use serde_json::json;
use std::time::Duration;

/// Liveness: the process answers. Checks nothing else on purpose, so a
/// database outage never gets healthy pods restarted.
#[handler]
pub fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers `SELECT 1` within two seconds. The body
/// names the check and says `unavailable` or `timed out`, no driver text.
#[handler]
pub async fn ready(pool: Data<&Pool>) -> Response {
    let check = tokio::time::timeout(Duration::from_secs(2), order_shared::db::ping(&pool)).await;
    // The reason goes to the log, never into this unauthenticated body.
    let database = match check {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Readiness: the database check failed.");
            Err("unavailable")
        }
        Err(_) => {
            tracing::warn!("Readiness: the database check timed out after 2 s.");
            Err("timed out")
        }
    };
    match database {
        Ok(()) => {
            Json(json!({ "status": "ready", "checks": { "database": "ok" } })).into_response()
        }
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "checks": { "database": error } })),
        )
            .into_response(),
    }
}

/// Prometheus scrape endpoint.
#[handler]
pub fn metrics(handle: Data<&PrometheusHandle>, pool: Data<&Pool>) -> Response {
    order_shared::db::record_pool_metrics(&pool, "api");
    handle
        .render()
        .with_content_type("text/plain; version=0.0.4; charset=utf-8")
        .into_response()
}
