//! The hand-off between the coordinator, which claims rows for its idle
//! shards in one statement, and each shard's worker, which publishes them.

use order_shared::db::outbox::OutboxRow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How the coordinator hands an idle shard's worker the rows it claimed
/// for it. Only the coordinator marks a worker busy (when it hands it
/// rows) and only the worker marks itself idle again (when it is done with
/// them), so a shard's rows are claimed by one of the two at a time: never
/// sent twice at once, never out of order.
#[derive(Debug, Default)]
pub struct Handoff {
    busy: AtomicBool,
    batch: Mutex<Option<Vec<OutboxRow>>>,
    ready: Notify,
}

impl Handoff {
    /// Whether the worker waits for rows.
    pub fn is_idle(&self) -> bool {
        !self.busy.load(Ordering::SeqCst)
    }

    /// Gives the (idle) worker its next batch.
    pub fn hand(&self, rows: Vec<OutboxRow>) {
        self.busy.store(true, Ordering::SeqCst);
        *self.batch.lock().unwrap_or_else(|e| e.into_inner()) = Some(rows);
        self.ready.notify_one();
    }

    /// The next batch, or `None` once `stop` is cancelled.
    pub(crate) async fn next(&self, stop: &CancellationToken) -> Option<Vec<OutboxRow>> {
        loop {
            if let Some(rows) = self.batch.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Some(rows);
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = self.ready.notified() => {}
            }
        }
    }

    pub(crate) fn done(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }
}
