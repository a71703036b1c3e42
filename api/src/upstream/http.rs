//! What the product and cart clients share: the HTTP client with its
//! timeouts, one GET with a circuit breaker, a retry and metrics, the
//! checking and encoding of ids into a path, and the mapping of failures
//! to problem answers.

use super::breaker::{Breaker, BreakerSettings};
use crate::problem::ApiError;
use order_shared::domain::{CONTROL_CHARACTERS, FieldError};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the other services are called (`UPSTREAM_*`).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamSettings {
    /// Connect and whole-call timeout.
    pub timeout: Duration,
    /// `UPSTREAM_MAX_CONCURRENCY`: product lookups in flight per request.
    pub max_concurrency: usize,
    /// `UPSTREAM_BREAKER_FAILURES` and `UPSTREAM_BREAKER_OPEN_SECS`.
    pub breaker: BreakerSettings,
}

/// One dependency: the shared HTTP client, its breaker and its name (the
/// `service` label of `upstream_requests_total`,
/// `upstream_request_duration_seconds` and `upstream_breaker_open`).
#[derive(Debug, Clone)]
pub struct Upstream {
    service: &'static str,
    http: reqwest::Client,
    breaker: Arc<Breaker>,
}

/// Records a failure if the call is dropped before its outcome is known
/// (the request timed out), so a half-open breaker never stays stuck.
struct Admitted<'a> {
    breaker: &'a Breaker,
    done: bool,
}

impl Admitted<'_> {
    fn record(mut self, ok: bool) {
        self.done = true;
        self.breaker.record(ok, Instant::now());
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.record(false, Instant::now());
        }
    }
}

/// 50 to 150 ms, random: the pause before the one retry.
fn jitter() -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(50 + random % 101)
}

impl Upstream {
    /// The dependency `service`, called with `http`.
    pub fn new(service: &'static str, http: reqwest::Client, breaker: BreakerSettings) -> Self {
        Upstream {
            service,
            http,
            breaker: Arc::new(Breaker::new(service, breaker)),
        }
    }

    fn count(&self, outcome: &'static str) {
        metrics::counter!("upstream_requests_total", "service" => self.service, "outcome" => outcome)
            .increment(1);
    }

    /// GETs `url` (with the caller's token when given). A GET is
    /// idempotent: when the service fails (5xx) or does not answer, it is
    /// asked once more after a random 50-150 ms. Any answer below 500 is
    /// returned; a failure after the retry, or an open breaker, is a 503.
    pub async fn get(
        &self,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<reqwest::Response, ApiError> {
        if let Err(wait) = self.breaker.admit(Instant::now()) {
            self.count("rejected");
            return Err(ApiError::unavailable_for(
                format!("The {} service is unavailable; retry later.", self.service),
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            ));
        }
        let admitted = Admitted {
            breaker: &self.breaker,
            done: false,
        };
        let mut retried = false;
        loop {
            let started = Instant::now();
            let mut request = self.http.get(url);
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            let result = request.send().await;
            metrics::histogram!("upstream_request_duration_seconds", "service" => self.service)
                .record(started.elapsed().as_secs_f64());
            let failed = result
                .as_ref()
                .map_or(true, |r| r.status().is_server_error());
            self.count(if failed { "failure" } else { "ok" });
            if failed && !retried {
                retried = true;
                tokio::time::sleep(jitter()).await;
                continue;
            }
            admitted.record(!failed);
            return match result {
                Ok(resp) if !failed => Ok(resp),
                Ok(resp) => Err(bad_status(self.service, resp.status().as_u16())),
                Err(e) => Err(unreachable_service(self.service, &e)),
            };
        }
    }
}

/// The HTTP client of the other services cannot be built (a TLS backend
/// that fails to start): a start-up error, never a client without timeouts.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client of the product and cart services: {0}")]
pub struct UpstreamError(#[from] reqwest::Error);

/// One HTTP client (a connection pool) with `timeout` on connecting and on
/// the whole call.
pub fn client(timeout: Duration) -> Result<reqwest::Client, UpstreamError> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()?)
}

/// An id that becomes a path segment of another service's URL: no `/`, no
/// `\\`, not `.` or `..` (dot segments would climb the path), no control
/// characters, 1 to 64 characters. Checked before any request is made.
pub fn check_path_id(field: &str, id: &str) -> Result<(), FieldError> {
    match path_id_problem(id) {
        Some(why) => Err(FieldError::new(field, why)),
        None => Ok(()),
    }
}

/// What is wrong with `id` as a path segment ([`check_path_id`] without
/// naming the field), if anything.
pub fn path_id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() || id.chars().count() > 64 {
        return Some("must be 1 to 64 characters");
    }
    if id.chars().any(char::is_control) {
        return Some(CONTROL_CHARACTERS);
    }
    if id == "." || id == ".." || id.contains(['/', '\\']) {
        return Some("must not be . or .. nor contain / or \\");
    }
    None
}

/// Percent-encodes a path segment (ids are client input).
pub fn encode_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The service did not answer (connect or read failed, timed out).
pub fn unreachable_service(name: &str, err: &reqwest::Error) -> ApiError {
    tracing::warn!(service = name, error = %err, "Dependency call failed.");
    ApiError::unavailable(format!("The {name} service is unavailable; retry later."))
}

/// The service answered 2xx with a body we cannot read.
pub fn bad_upstream(name: &str, err: &reqwest::Error) -> ApiError {
    tracing::error!(service = name, error = %err, "Dependency answered with an unreadable body.");
    ApiError::unavailable(format!(
        "The {name} service answered unexpectedly; retry later."
    ))
}

/// The service answered with an error status.
pub fn bad_status(name: &str, status: u16) -> ApiError {
    tracing::warn!(
        service = name,
        status,
        "Dependency answered with an error status."
    );
    ApiError::unavailable(format!("The {name} service is unavailable; retry later."))
}

#[cfg(test)]
mod tests {
    use super::{check_path_id, encode_segment};

    #[test]
    fn ids_that_would_climb_the_path_are_refused() {
        for bad in [".", "..", "a/b", "a\\b", "", "a\u{0}"] {
            assert!(check_path_id("cartId", bad).is_err(), "{bad:?}");
        }
        for good in ["sku-1", "a.b", "...", "x".repeat(64).as_str()] {
            assert!(check_path_id("cartId", good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("sku-1"), "sku-1");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
