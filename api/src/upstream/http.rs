//! What the product and cart clients share: the HTTP client with its
//! timeouts, the encoding of ids into a path, and the mapping of failures
//! to problem answers.

use crate::problem::ApiError;
use std::time::Duration;

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
    use super::encode_segment;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("sku-1"), "sku-1");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
