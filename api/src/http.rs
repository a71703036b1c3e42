//! The middleware around every request: body limit, request timeout, a span
//! with the trace id, Prometheus request metrics, and the rule that every
//! error leaves as `application/problem+json`.

mod body;
mod request_metrics;

use crate::auth::{Authenticated, JwtVerifier, authenticate};
use crate::problem::{ApiError, PROBLEM_CONTENT_TYPE, Problem, types};
use order_shared::domain::FieldError;
use order_shared::telemetry::RequestLog;
use order_shared::trace::{TRACEPARENT, TraceParent};
use poem::error::ReadBodyError;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of [`HttpLayer`].
#[derive(Debug, Clone)]
pub struct HttpLayer {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// The body must arrive within this (408 after).
    pub body_read_timeout: Duration,
    /// Authenticates `/api/orders` writes before their body is read, and
    /// is handed to the security scheme of every other request.
    pub verifier: Arc<JwtVerifier>,
}

impl<E: Endpoint> Middleware<E> for HttpLayer {
    type Output = HttpEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        HttpEndpoint {
            inner,
            cfg: self.clone(),
        }
    }
}

pub struct HttpEndpoint<E> {
    inner: E,
    cfg: HttpLayer,
}

/// The route template of a path, for metric labels (never ids).
pub fn route_label(path: &str) -> &'static str {
    // The first five segments, without a Vec per request.
    let mut parts = path.trim_end_matches('/').split('/').skip(1);
    let segments: [Option<&str>; 5] = std::array::from_fn(|_| parts.next());
    match segments {
        [Some("api"), Some("orders"), None, ..] => "/api/orders",
        [Some("api"), Some("orders"), Some("events"), None, _] => "/api/orders/events",
        [Some("api"), Some("orders"), Some(_), None, _] => "/api/orders/{id}",
        [Some("api"), Some("orders"), Some(_), Some(last), None] => match last {
            "events" => "/api/orders/{id}/events",
            "history" => "/api/orders/{id}/history",
            "cancel" => "/api/orders/{id}/cancel",
            "ship" => "/api/orders/{id}/ship",
            "deliver" => "/api/orders/{id}/deliver",
            _ => "unmatched",
        },
        [Some("api"), Some("openapi.json"), None, ..] => "/api/openapi.json",
        [Some("api"), Some("asyncapi.json"), None, ..] => "/api/asyncapi.json",
        [Some("docs"), ..] => "/docs",
        [Some("health"), Some("live"), None, ..] => "/health/live",
        [Some("health"), Some("ready"), None, ..] => "/health/ready",
        [Some("metrics"), None, ..] => "/metrics",
        _ => "unmatched",
    }
}

/// The method as a metric label; extension methods all count as `OTHER`
/// (bounded label values).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// The methods a route template answers, for the `Allow` header of a 405.
fn allowed_methods(route: &str) -> Option<&'static str> {
    match route {
        "/api/orders" => Some("GET, POST"),
        "/api/orders/{id}"
        | "/api/orders/{id}/history"
        | "/api/orders/events"
        | "/api/orders/{id}/events"
        | "/api/openapi.json"
        | "/api/asyncapi.json"
        | "/health/live"
        | "/health/ready"
        | "/metrics" => Some("GET"),
        "/api/orders/{id}/cancel" | "/api/orders/{id}/ship" | "/api/orders/{id}/deliver" => {
            Some("PATCH")
        }
        _ => None,
    }
}

fn problem_response(status: StatusCode, detail: String) -> Response {
    let ty = match status {
        StatusCode::PAYLOAD_TOO_LARGE => types::PAYLOAD_TOO_LARGE,
        StatusCode::REQUEST_TIMEOUT => types::REQUEST_TIMEOUT,
        StatusCode::SERVICE_UNAVAILABLE => types::UNAVAILABLE,
        StatusCode::UNAUTHORIZED => types::UNAUTHORIZED,
        StatusCode::BAD_REQUEST => types::BAD_REQUEST,
        _ => types::BLANK,
    };
    let problem = Problem::new(status, ty, detail);
    let body = poem_openapi::types::ToJSON::to_json_string(&problem);
    let mut resp = Response::builder()
        .status(status)
        .content_type(PROBLEM_CONTENT_TYPE)
        .body(body);
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// Turns an error response that is not yet a problem document into one
/// (and names the allowed methods on a 405, as RFC 9110 asks).
async fn ensure_problem(resp: Response, route: &str) -> Response {
    let status = resp.status();
    // A problem already, or JSON on purpose (the readiness body): keep it.
    let is_json = resp.content_type().is_some_and(|ct| {
        ct.starts_with(PROBLEM_CONTENT_TYPE) || ct.starts_with("application/json")
    });
    if status.as_u16() < 400 || is_json {
        return resp;
    }
    let detail = resp.into_body().into_string().await.unwrap_or_default();
    let detail = if detail.trim().is_empty() {
        status.canonical_reason().unwrap_or("Error").to_owned()
    } else {
        detail
    };
    if status == StatusCode::BAD_REQUEST
        && let Some(field) = invalid_parameter(&detail)
    {
        let error = FieldError::new(field, tidy_parameter_detail(&detail));
        return ApiError::validation(vec![error]).into_response();
    }
    let mut resp = problem_response(status, detail);
    if status == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = allowed_methods(route)
    {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

/// The parameter a framework error names (`failed to parse parameter
/// `userId`: ...`), so that its 400 names the field like the handlers' do.
fn invalid_parameter(detail: &str) -> Option<&str> {
    let rest = detail
        .strip_prefix("failed to parse parameter `")
        .or_else(|| detail.strip_prefix("failed to parse path `"))?;
    rest.split('`').next().filter(|name| !name.is_empty())
}

/// A framework parameter error without the framework's type names:
/// "failed to parse parameter `cursor`: verification failed. pattern(..)"
/// rather than "...: failed to parse \"string\": verification failed.
/// pattern(..) (occurred while parsing \"optional_string\")".
fn tidy_parameter_detail(detail: &str) -> String {
    let Some((head, reason)) = detail.split_once("`: ") else {
        return detail.to_owned();
    };
    let reason = reason
        .strip_prefix("failed to parse \"")
        .and_then(|r| r.split_once("\": "))
        .map_or(reason, |(_, r)| r);
    let reason = match reason.rfind(" (occurred while parsing \"") {
        Some(at) if reason.ends_with("\")") => &reason[..at],
        _ => reason,
    };
    format!("{head}`: {reason}")
}

/// The request's valid `traceparent` header, if any (the one parser:
/// [`TraceParent::parse`]).
pub fn traceparent(req: &Request) -> Option<TraceParent> {
    req.headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse)
}

/// The trace id of the request's log lines: the caller's, else a new one.
fn trace_id(req: &Request) -> String {
    traceparent(req)
        .map(|tp| tp.trace_id().to_owned())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// Seconds a client should wait after a 503 before it retries.
pub const RETRY_AFTER_UNAVAILABLE_SECS: u32 = 5;

/// The headers every answer carries, and the request's trace id as the
/// `instance` of a problem body.
async fn finish(mut resp: Response, route: &str, trace_id: &str) -> Response {
    let headers = resp.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if route.starts_with("/api/orders") {
        // Orders carry a postal address: no shared or browser cache keeps them.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE
        && !resp.headers().contains_key(header::RETRY_AFTER)
    {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(RETRY_AFTER_UNAVAILABLE_SECS),
        );
    }
    let is_problem = resp
        .content_type()
        .is_some_and(|ct| ct.starts_with(PROBLEM_CONTENT_TYPE));
    if !is_problem {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = body.into_vec().await.unwrap_or_default();
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut problem)) => {
            problem.insert("instance".into(), trace_id.into());
            parts.headers.remove(header::CONTENT_LENGTH);
            serde_json::to_vec(&problem).unwrap_or(bytes)
        }
        _ => bytes,
    };
    Response::from_parts(parts, Body::from(body))
}

impl<E: Endpoint> HttpEndpoint<E> {
    /// The request's answer, before the headers every answer carries.
    async fn serve(&self, mut req: Request, route: &'static str) -> Response {
        if let Some(resp) = self.read_body(&mut req, route).await {
            return resp;
        }
        if req.extensions().get::<Authenticated>().is_none() {
            // The security scheme checks the token of a request the
            // middleware did not authenticate with this verifier.
            req.extensions_mut().insert(self.cfg.verifier.clone());
        }
        match tokio::time::timeout(self.cfg.request_timeout, self.inner.call(req)).await {
            Ok(Ok(resp)) => ensure_problem(resp.into_response(), route).await,
            Ok(Err(err)) => ensure_problem(err.into_response(), route).await,
            Err(_) => {
                tracing::warn!("Request timed out.");
                problem_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The request timed out; retry later.".to_owned(),
                )
            }
        }
    }

    /// For a request with a body: a declared size over the limit is 413
    /// at once; an `/api/orders` write is authenticated before a byte of
    /// its body is read (401); then the body is read within
    /// `body_read_timeout` (408) and at most `max_body_bytes` (413).
    async fn read_body(&self, req: &mut Request, route: &str) -> Option<Response> {
        if !matches!(*req.method(), Method::POST | Method::PATCH | Method::PUT) {
            return None;
        }
        let too_large = || {
            problem_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The request body exceeds {} bytes.",
                    self.cfg.max_body_bytes
                ),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > self.cfg.max_body_bytes) {
            return Some(too_large());
        }
        if route.starts_with("/api/orders") {
            match authenticate(&self.cfg.verifier, req) {
                // The handler's security scheme takes it from here: one check.
                Ok(caller) => {
                    req.extensions_mut().insert(Authenticated(caller));
                }
                Err(refused) => return Some(refused.into_response()),
            }
        }
        let body = body::read_limited(req.take_body(), self.cfg.max_body_bytes);
        match tokio::time::timeout(self.cfg.body_read_timeout, body).await {
            Ok(Ok(body)) => {
                req.set_body(body);
                None
            }
            Ok(Err(ReadBodyError::PayloadTooLarge)) => Some(too_large()),
            Ok(Err(e)) => {
                tracing::info!(error = %e, "Reading the request body failed.");
                Some(problem_response(
                    StatusCode::BAD_REQUEST,
                    "The request body could not be read.".to_owned(),
                ))
            }
            Err(_) => {
                metrics::counter!("http_slow_clients_cut_total", "phase" => "body").increment(1);
                let mut resp = problem_response(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "The request body did not arrive within {} ms.",
                        self.cfg.body_read_timeout.as_millis()
                    ),
                );
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                Some(resp)
            }
        }
    }
}

impl<E: Endpoint> Endpoint for HttpEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let started = Instant::now();
        // Bounded label values: extension methods all count as OTHER.
        let method = method_label(req.method());
        let route = route_label(req.uri().path());
        let trace_id = trace_id(&req);
        // Every line the request logs carries these (the order id too, once known).
        let log = RequestLog::new(method, route, trace_id.clone());
        // PATCH bodies are optional (cancel takes `{reason?}`): read "no
        // content type" as JSON so that an empty body means "no fields".
        if req.method() == Method::PATCH && !req.headers().contains_key(header::CONTENT_TYPE) {
            req.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        log.scope(async move {
            let resp = self.serve(req, route).await;
            let resp = finish(resp, route, &trace_id).await;
            let status = resp.status().as_u16();
            let elapsed = started.elapsed().as_secs_f64();
            request_metrics::record(method, route, status, elapsed);
            if status >= 500 {
                tracing::warn!(status, elapsed_ms = elapsed * 1e3, "Request failed.");
            } else {
                tracing::debug!(status, elapsed_ms = elapsed * 1e3, "Request served.");
            }
            Ok(resp)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
