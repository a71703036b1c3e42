//! RFC 9457 problem details: the one place where errors become HTTP. Every
//! 4xx/5xx the API sends is `application/problem+json`; internal errors are
//! logged with their cause chain and answered with a bare 500.

use order_shared::StoreError;
use order_shared::domain::{DomainError, FieldError, entity_tag};
use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

/// The media type of every error body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// The problem type URIs (RFC 9457 `type`), one per kind of failure. The
/// handlers and the middleware both use these; none is written elsewhere.
pub mod types {
    /// Malformed request (bad JSON, wrong content type).
    pub const BAD_REQUEST: &str = "/problems/bad-request";
    /// Fields that break the rules; `errors` names them.
    pub const VALIDATION: &str = "/problems/validation";
    /// No, bad or expired token.
    pub const UNAUTHORIZED: &str = "/problems/unauthorized";
    /// Authenticated, but not allowed.
    pub const FORBIDDEN: &str = "/problems/forbidden";
    /// No such order (or not the caller's).
    pub const NOT_FOUND: &str = "/problems/not-found";
    /// `If-Match` named a version the order is no longer at.
    pub const STALE_VERSION: &str = "/problems/stale-version";
    /// The state machine refuses the change.
    pub const INVALID_TRANSITION: &str = "/problems/invalid-transition";
    /// The Idempotency-Key was used with another body.
    pub const IDEMPOTENCY_KEY_REUSED: &str = "/problems/idempotency-key-reused";
    /// The body did not arrive within `HTTP_BODY_READ_TIMEOUT_MS`.
    pub const REQUEST_TIMEOUT: &str = "/problems/request-timeout";
    /// The body is over `MAX_BODY_BYTES`.
    pub const PAYLOAD_TOO_LARGE: &str = "/problems/payload-too-large";
    /// Too many requests: wait `Retry-After` seconds.
    pub const RATE_LIMITED: &str = "/problems/rate-limited";
    /// A dependency is down, or the request timed out.
    pub const UNAVAILABLE: &str = "/problems/unavailable";
    /// The status code says it all (RFC 9457).
    pub const BLANK: &str = "about:blank";
}

/// `Retry-After` of a refused live-update stream.
pub const STREAM_RETRY_AFTER_SECS: u64 = 10;

/// One invalid field of the request.
#[derive(Object, Debug, Clone)]
pub struct ProblemField {
    /// JSON path of the field, e.g. `items[0].quantity`.
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem details body.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct Problem {
    /// A URI reference naming the problem type (`about:blank` when the status says it all).
    #[oai(rename = "type")]
    pub ty: String,
    pub title: String,
    pub status: u16,
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
    /// Field errors of a validation failure.
    #[oai(skip_serializing_if_is_none)]
    pub errors: Option<Vec<ProblemField>>,
    /// The order's status when a transition was refused.
    #[oai(skip_serializing_if_is_none)]
    pub current_status: Option<String>,
    /// The order's version when `If-Match` named another one: fetch the
    /// order again, check the change still makes sense, and retry.
    #[oai(skip_serializing_if_is_none)]
    pub current_version: Option<i64>,
    /// The request's trace id (the `traceparent` trace id, or one made up):
    /// quote it when reporting the problem; the server's log lines carry it.
    #[oai(skip_serializing_if_is_none)]
    pub instance: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, ty: &str, detail: impl Into<String>) -> Self {
        Problem {
            ty: ty.to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: Some(detail.into()),
            errors: None,
            current_status: None,
            current_version: None,
            instance: None,
        }
    }
}

/// Every error response of the API, one variant per status.
#[derive(ApiResponse, Debug)]
pub enum ApiError {
    /// The request is malformed or invalid.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No, bad or expired bearer token.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The caller may not use this route.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// No such order (or not the caller's).
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The order's status does not allow this change.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// `If-Match` named another version than the order's; `currentVersion`
    /// says which it is now.
    #[oai(status = 412, content_type = "application/problem+json")]
    PreconditionFailed(Json<Problem>, #[oai(header = "ETag")] String),
    /// The request body did not arrive within `HTTP_BODY_READ_TIMEOUT_MS`.
    #[oai(status = 408, content_type = "application/problem+json")]
    RequestTimeout(Json<Problem>),
    /// The request body is larger than `MAX_BODY_BYTES`.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The request body is not `application/json`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// The Idempotency-Key was used with another request body.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Too many orders created by this user; retry after `Retry-After` seconds.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] String),
    /// An unexpected failure; details are in the server log.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// A dependency (database, product or cart service) is unavailable; retry later.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(
        Json<Problem>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        Option<String>,
    ),
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest(Json(Problem::new(
            StatusCode::BAD_REQUEST,
            types::BAD_REQUEST,
            detail,
        )))
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut problem = Problem::new(
            StatusCode::BAD_REQUEST,
            types::VALIDATION,
            "The request has invalid fields.",
        );
        problem.errors = Some(
            errors
                .into_iter()
                .map(|e| ProblemField {
                    field: e.field,
                    message: e.message,
                })
                .collect(),
        );
        ApiError::BadRequest(Json(problem))
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ApiError::Unauthorized(
            Json(Problem::new(
                StatusCode::UNAUTHORIZED,
                types::UNAUTHORIZED,
                detail,
            )),
            "Bearer".to_owned(),
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::Forbidden(Json(Problem::new(
            StatusCode::FORBIDDEN,
            types::FORBIDDEN,
            detail,
        )))
    }

    pub fn not_found() -> Self {
        ApiError::NotFound(Json(Problem::new(
            StatusCode::NOT_FOUND,
            types::NOT_FOUND,
            "No such order.",
        )))
    }

    /// 503; the middleware adds its default `Retry-After`.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError::Unavailable(
            Json(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                types::UNAVAILABLE,
                detail,
            )),
            None,
        )
    }

    /// 503 with a known wait (an open circuit breaker).
    pub fn unavailable_for(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        match ApiError::unavailable(detail) {
            ApiError::Unavailable(problem, _) => {
                ApiError::Unavailable(problem, Some(retry_after_secs.max(1).to_string()))
            }
            other => other,
        }
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        ApiError::TooManyRequests(
            Json(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                types::RATE_LIMITED,
                format!("Too many orders; retry in {retry_after_secs} s."),
            )),
            retry_after_secs.to_string(),
        )
    }

    /// 429 for one live-update stream too many.
    pub fn too_many_streams(max: usize) -> Self {
        ApiError::TooManyRequests(
            Json(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                types::RATE_LIMITED,
                format!(
                    "You have {max} live-update streams open (SSE_MAX_STREAMS_PER_USER); \
                     close one, or retry later."
                ),
            )),
            STREAM_RETRY_AFTER_SECS.to_string(),
        )
    }

    pub fn internal() -> Self {
        ApiError::Internal(Json(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            types::BLANK,
            "An unexpected error occurred; it has been logged.",
        )))
    }

    /// Logs an unexpected error with its cause chain and returns a bare 500.
    pub fn internal_from(err: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %error_chain(err), "Request failed with an internal error.");
        ApiError::internal()
    }
}

pub use order_shared::error::error_chain;

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        StoreError::from(err).into()
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(err: tokio_postgres::Error) -> Self {
        StoreError::from(err).into()
    }
}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::InvalidTransition { current, requested } => {
                let mut problem = Problem::new(
                    StatusCode::CONFLICT,
                    types::INVALID_TRANSITION,
                    format!("The order is {current}; it cannot become {requested}."),
                );
                problem.current_status = Some(current.to_string());
                ApiError::Conflict(Json(problem))
            }
            DomainError::StaleVersion { current_version } => {
                let mut problem = Problem::new(
                    StatusCode::PRECONDITION_FAILED,
                    types::STALE_VERSION,
                    format!(
                        "The order is at version {current_version}, not the one in If-Match; \
                         read it again and retry."
                    ),
                );
                problem.current_version = Some(current_version);
                ApiError::PreconditionFailed(Json(problem), entity_tag(current_version))
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::IdempotencyMismatch => ApiError::Unprocessable(Json(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                types::IDEMPOTENCY_KEY_REUSED,
                "This Idempotency-Key was already used with a different request body.",
            ))),
            StoreError::Unavailable(ref cause) => {
                tracing::warn!(error = %error_chain(cause.as_ref()), "Database unavailable.");
                ApiError::unavailable("The database is unavailable; retry later.")
            }
            other => ApiError::internal_from(&other),
        }
    }
}
