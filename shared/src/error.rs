//! The error policy of the data layer: every failure is one of a few kinds,
//! and each adapter (HTTP, Kafka) maps the kind, never the message.

use std::error::Error as StdError;
use tokio_postgres::error::SqlState;

/// Why a data-layer call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such order, or not one the caller may see.
    #[error("order not found")]
    NotFound,
    /// The Idempotency-Key was used before with a different request body.
    #[error("the Idempotency-Key was already used with a different request")]
    IdempotencyMismatch,
    /// The database cannot be reached or is shutting down: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
    /// Any other database failure: a bug or a broken invariant.
    #[error("database error: {0}")]
    Database(#[source] tokio_postgres::Error),
    /// A stored value the code cannot read back.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Transient failures that a retry (later) may cure.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// The SQLSTATE the server answered with, if the failure came from it.
    pub fn sql_state(&self) -> Option<&SqlState> {
        match self {
            StoreError::Database(err) => err.code(),
            StoreError::Unavailable(err) => err
                .downcast_ref::<tokio_postgres::Error>()
                .and_then(tokio_postgres::Error::code),
            _ => None,
        }
    }

    /// A failure caused by the data itself (SQLSTATE classes 22 "data
    /// exception" and 23 "integrity constraint violation"): retrying the
    /// same input gives the same answer.
    pub fn is_data_error(&self) -> bool {
        self.sql_state()
            .is_some_and(|s| s.code().starts_with("22") || s.code().starts_with("23"))
    }
}

/// SQLSTATEs that mean "the server is not there right now".
fn is_unavailable_state(state: &SqlState) -> bool {
    let code = state.code();
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (too many connections)
        || *state == SqlState::ADMIN_SHUTDOWN
        || *state == SqlState::CRASH_SHUTDOWN
        || *state == SqlState::CANNOT_CONNECT_NOW
        || *state == SqlState::QUERY_CANCELED // statement_timeout
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        let io_failure = err
            .source()
            .is_some_and(|cause| cause.downcast_ref::<std::io::Error>().is_some());
        let unavailable =
            err.is_closed() || io_failure || err.code().is_some_and(is_unavailable_state);
        if unavailable {
            StoreError::Unavailable(Box::new(err))
        } else {
            StoreError::Database(err)
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(e) => StoreError::from(e),
            other => StoreError::Unavailable(Box::new(other)),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> Self {
        StoreError::Corrupt(err.to_string())
    }
}

/// `outer: inner: innermost`, for logs and dead-letter reasons (a driver's
/// top-level message alone, "db error", says nothing).
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
