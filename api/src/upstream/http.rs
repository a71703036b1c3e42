//! What the product and cart clients share: the HTTP client with its
//! timeouts, the encoding of ids into a path, and the mapping of failures
//! to problem answers.

use crate::problem::ApiError;
use order_shared::domain::{CONTROL_CHARACTERS, FieldError};
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

/// An id that becomes a path segment of another service's URL: no `/`, no
/// `\\`, not `.` or `..` (dot segments would climb the path), no control
/// characters, 1 to 64 characters. Checked before any request is made.
pub fn check_path_id(field: &str, id: &str) -> Result<(), FieldError> {
    let fail = |why: &str| Err(FieldError::new(field, why));
    if id.is_empty() || id.chars().count() > 64 {
        return fail("must be 1 to 64 characters");
    }
    if id.chars().any(char::is_control) {
        return fail(CONTROL_CHARACTERS);
    }
    if id == "." || id == ".." || id.contains(['/', '\\']) {
        return fail("must not be . or .. nor contain / or \\");
    }
    Ok(())
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
