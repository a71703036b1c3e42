//! A request's log context, held by the request's own future: what every
//! line logged while the API serves a request says about it (DESIGN
//! section 7: the trace id, and the order id once known), written by both
//! log formats where the `request` span's fields were (`"span"` and
//! `"spans"` in JSON, `request{...}:` in text).
//!
//! It replaced a tracing span per request, which cost 17 µs of CPU per
//! create (docs/benchmarks.md, twenty-sixth pass): a span lives in the
//! subscriber's registry, which the runtime's threads share, is entered
//! and left at every poll, and keeps its fields as text in an extension.
//! This is a few words in the request's future, set for each poll.

use std::cell::Cell;
use std::future::Future;
use uuid::Uuid;

tokio::task_local! {
    static REQUEST: RequestLog;
}

/// What the log lines of one request say about it.
#[derive(Debug)]
pub struct RequestLog {
    pub(super) method: &'static str,
    pub(super) route: &'static str,
    pub(super) trace_id: String,
    pub(super) order_id: Cell<Option<Uuid>>,
}

impl RequestLog {
    /// A request's context: its method and route (the metric labels) and
    /// its trace id (the caller's `traceparent`, else a new one).
    pub fn new(method: &'static str, route: &'static str, trace_id: String) -> Self {
        RequestLog {
            method,
            route,
            trace_id,
            order_id: Cell::new(None),
        }
    }

    /// Runs `request` in this context: every line logged while it is
    /// polled carries it.
    pub fn scope<F: Future>(self, request: F) -> impl Future<Output = F::Output> {
        REQUEST.scope(self, request)
    }

    /// Runs `f` in this context (for tests and other synchronous work).
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        REQUEST.sync_scope(self, f)
    }
}

/// Puts the order id on the lines the current request logs from now on;
/// nothing outside a request.
pub fn tag_order(id: Uuid) {
    let _ = REQUEST.try_with(|request| request.order_id.set(Some(id)));
}

/// Calls `f` with the context of the request being served, if any.
pub(super) fn with_request<R>(f: impl FnOnce(&RequestLog) -> R) -> Option<R> {
    REQUEST.try_with(f).ok()
}
