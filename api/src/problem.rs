//! RFC 9457 problem details: the one place where errors become HTTP. Every
//! 4xx/5xx the API sends is `application/problem+json`; internal errors are
//! logged with their cause chain and answered with a bare 500.

use order_shared::StoreError;
use order_shared::domain::FieldError;
use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

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
    /// The Idempotency-Key was used with another request body.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// An unexpected failure; details are in the server log.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// A dependency (database, product or cart service) is unavailable; retry later.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest(Json(Problem::new(
            StatusCode::BAD_REQUEST,
            "/problems/bad-request",
            detail,
        )))
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut problem = Problem::new(
            StatusCode::BAD_REQUEST,
            "/problems/validation",
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
                "/problems/unauthorized",
                detail,
            )),
            "Bearer".to_owned(),
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::Forbidden(Json(Problem::new(
            StatusCode::FORBIDDEN,
            "/problems/forbidden",
            detail,
        )))
    }

    pub fn not_found() -> Self {
        ApiError::NotFound(Json(Problem::new(
            StatusCode::NOT_FOUND,
            "/problems/not-found",
            "No such order.",
        )))
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError::Unavailable(Json(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "/problems/unavailable",
            detail,
        )))
    }

    pub fn internal() -> Self {
        ApiError::Internal(Json(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "about:blank",
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

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::InvalidTransition { current, requested } => {
                let mut problem = Problem::new(
                    StatusCode::CONFLICT,
                    "/problems/invalid-transition",
                    format!("The order is {current}; it cannot become {requested}."),
                );
                problem.current_status = Some(current.to_string());
                ApiError::Conflict(Json(problem))
            }
            StoreError::IdempotencyMismatch => ApiError::Unprocessable(Json(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "/problems/idempotency-key-reused",
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
