//! The hand-off between the coordinator, which claims rows for its ready
//! shards in one statement, and each shard's worker, which publishes them.
//!
//! A shard may have up to `OUTBOX_BATCHES_IN_FLIGHT` batches sent and
//! waiting for their acknowledgements, so that new rows do not wait behind
//! a slow ack, and at most `OUTBOX_BATCH_SIZE` rows in them all (memory
//! stays what one full batch per shard takes). Order per order still holds
//! because the orders of the batches in flight are excluded from the next
//! claim: an order's rows are in one batch at a time, and a row that failed
//! still holds back its order's later rows (they are claimed only after the
//! failure was recorded). One claim per shard at a time: the coordinator's
//! or, after a full batch, the worker's own ([`Handoff::begin_claim`]).

use order_shared::db::outbox::OutboxRow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How the coordinator (or the worker itself) hands a shard's worker the
/// rows claimed for it. A claim starts with [`begin_claim`](Handoff::begin_claim),
/// which says how many rows to claim and which orders to leave out, and ends
/// with [`hand`](Handoff::hand), [`end_claim`](Handoff::end_claim) or
/// [`claim_failed`](Handoff::claim_failed).
#[derive(Debug)]
pub struct Handoff {
    max_in_flight: usize,
    /// Rows this shard may have in flight: the relay's
    /// `OUTBOX_MAX_ROWS_IN_FLIGHT` split among its shards, at most
    /// `OUTBOX_BATCH_SIZE` ([`RowCap`]).
    max_rows: RowCap,
    state: Mutex<State>,
    ready: Notify,
}

/// What one claim for a shard may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSpec {
    /// Rows at most (`OUTBOX_BATCH_SIZE` less the rows in flight).
    pub limit: i64,
    /// The orders of the batches queued and in flight.
    pub exclude: Vec<Uuid>,
    /// Rows the broker acknowledged since the shard's last claim: deleted
    /// in the same round trip, just before the claim (which then cannot
    /// see them). Handed back with [`claim_failed`](Handoff::claim_failed)
    /// if that fails.
    pub delete: Vec<i64>,
}

#[derive(Debug, Default)]
struct State {
    /// Handed, not yet taken by the worker.
    queued: Option<Vec<OutboxRow>>,
    /// Batches taken and not yet settled (acked, or failed and
    /// recorded).
    in_flight: usize,
    /// Rows of the queued and in-flight batches.
    rows: usize,
    /// A claim for this shard is running.
    claiming: bool,
    /// The orders of the queued and in-flight batches.
    orders: HashSet<Uuid>,
    /// The worker takes nothing for now (backing off after an error, or
    /// stopped at a parked row).
    paused: bool,
    /// Acknowledged rows not yet deleted: the next claim deletes them.
    acked: Vec<i64>,
}

impl Handoff {
    pub fn new(max_in_flight: usize, max_rows: RowCap) -> Self {
        Handoff {
            max_in_flight: max_in_flight.max(1),
            max_rows,
            state: Mutex::new(State::default()),
            ready: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a claim when the worker takes another batch now (not paused,
    /// nothing queued, fewer batches and rows in flight than allowed, no
    /// other claim running): what to claim. Every `Some` must be followed
    /// by [`hand`](Self::hand), [`end_claim`](Self::end_claim) or
    /// [`claim_failed`](Self::claim_failed).
    pub fn begin_claim(&self) -> Option<ClaimSpec> {
        let max_rows = self.max_rows.get();
        let mut s = self.state();
        let takes = !s.paused
            && !s.claiming
            && s.queued.is_none()
            && s.in_flight < self.max_in_flight
            && s.rows < max_rows;
        if !takes {
            return None;
        }
        s.claiming = true;
        Some(ClaimSpec {
            limit: (max_rows - s.rows) as i64,
            exclude: s.orders.iter().copied().collect(),
            delete: std::mem::take(&mut s.acked),
        })
    }

    /// The rows this shard may have in flight now: a batch of this many
    /// is full (more rows are likely waiting).
    pub fn max_rows(&self) -> usize {
        self.max_rows.get()
    }

    /// Ends a claim that found nothing.
    pub fn end_claim(&self) {
        self.state().claiming = false;
    }

    /// Ends a claim that failed: its rows to delete (`spec.delete`) are
    /// deleted by the next one.
    pub fn claim_failed(&self, spec: ClaimSpec) {
        let mut s = self.state();
        s.claiming = false;
        s.acked.extend(spec.delete);
    }

    /// The acknowledged rows no claim has deleted yet, for a worker that
    /// stops to delete itself.
    pub(crate) fn take_acked(&self) -> Vec<i64> {
        std::mem::take(&mut self.state().acked)
    }

    /// Whether nothing is queued or in flight.
    #[cfg(test)]
    fn is_idle(&self) -> bool {
        let s = self.state();
        s.queued.is_none() && s.in_flight == 0
    }

    /// Ends a claim with the rows it found: the worker's next batch.
    pub fn hand(&self, rows: Vec<OutboxRow>) {
        let mut s = self.state();
        s.claiming = false;
        s.rows += rows.len();
        s.orders.extend(rows.iter().map(|r| r.order_id));
        match s.queued.as_mut() {
            // Never expected (a claim begins only when nothing is queued);
            // kept in id order rather than lost.
            Some(queued) => queued.extend(rows),
            None => s.queued = Some(rows),
        }
        drop(s);
        self.ready.notify_one();
    }

    /// The next batch, counted in flight until [`settled`](Self::settled);
    /// `None` once `stop` is cancelled.
    pub(crate) async fn next(&self, stop: &CancellationToken) -> Option<Vec<OutboxRow>> {
        loop {
            {
                let mut s = self.state();
                if let Some(rows) = s.queued.take() {
                    s.in_flight += 1;
                    return Some(rows);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = self.ready.notified() => {}
            }
        }
    }

    /// A batch taken with [`next`](Self::next) is done (`orders`: the order
    /// of each of its rows): its failures are recorded and `acked` (the
    /// rows that may be deleted) wait for the shard's next claim, which
    /// deletes them before it reads, so its orders may be claimed again.
    pub(crate) fn settled(&self, orders: &[Uuid], acked: &[i64]) {
        let mut s = self.state();
        s.acked.extend_from_slice(acked);
        s.in_flight = s.in_flight.saturating_sub(1);
        s.rows = s.rows.saturating_sub(orders.len());
        for order in orders {
            s.orders.remove(order);
        }
    }

    /// Takes no batch until [`resume`](Self::resume).
    pub(crate) fn pause(&self) {
        self.state().paused = true;
    }

    pub(crate) fn resume(&self) {
        self.state().paused = false;
    }
}

/// The rows each shard of a relay may have in flight, shared by the
/// shards' hand-offs: `OUTBOX_MAX_ROWS_IN_FLIGHT` split evenly among the
/// shards the relay works, at least 1 and at most `OUTBOX_BATCH_SIZE`.
/// Split evenly, rather than taken first come first served from a common
/// pool, so that no busy shard starves another.
#[derive(Debug, Clone)]
pub struct RowCap(Arc<AtomicUsize>);

impl RowCap {
    pub fn new(rows: usize) -> Self {
        RowCap(Arc::new(AtomicUsize::new(rows.max(1))))
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Splits `budget` among `shards`, at most `batch` rows each; returns
    /// the new cap.
    pub fn split(&self, budget: usize, shards: usize, batch: usize) -> usize {
        let cap = (budget / shards.max(1)).clamp(1, batch.max(1));
        self.0.store(cap, Ordering::Relaxed);
        cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, order: Uuid) -> OutboxRow {
        OutboxRow {
            id,
            event_id: Uuid::now_v7(),
            order_id: order,
            version: id,
            event_type: "order.created".into(),
            topic: "order.created".into(),
            payload: "{}".into(),
            headers: serde_json::Value::Null,
            created_at: chrono::Utc::now(),
            attempts: 0,
            parked: false,
        }
    }

    #[tokio::test]
    async fn orders_stay_excluded_from_claims_until_their_batch_settled() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let handoff = Handoff::new(2, RowCap::new(500));
        let stop = CancellationToken::new();
        assert!(handoff.is_idle());

        let spec = handoff.begin_claim().unwrap();
        assert_eq!((spec.limit, spec.exclude.len()), (500, 0));
        assert_eq!(handoff.begin_claim(), None, "one claim at a time");
        handoff.hand(vec![row(1, a), row(2, a)]);
        assert_eq!(handoff.begin_claim(), None, "one batch queued at a time");
        let first = handoff.next(&stop).await.unwrap();
        assert_eq!(first.len(), 2);

        let spec = handoff
            .begin_claim()
            .expect("a second batch while the first waits");
        assert_eq!((spec.limit, spec.exclude), (498, vec![a]));
        handoff.hand(vec![row(3, b)]);
        let second = handoff.next(&stop).await.unwrap();
        assert_eq!(second[0].id, 3);
        assert_eq!(handoff.begin_claim(), None, "two in flight: the limit");

        handoff.settled(&[b], &[3]);
        let spec = handoff.begin_claim().unwrap();
        assert_eq!(spec.exclude, vec![a], "a's batch still waits");
        assert_eq!(spec.delete, vec![3], "b's acked row goes with the claim");
        handoff.end_claim();
        handoff.settled(&[a, a], &[1, 2]);
        assert!(handoff.is_idle());
        let spec = handoff.begin_claim().unwrap();
        assert_eq!((spec.limit, spec.delete), (500, vec![1, 2]));
    }

    #[tokio::test]
    async fn acked_rows_of_a_failed_claim_go_with_the_next_one() {
        let handoff = Handoff::new(2, RowCap::new(500));
        let stop = CancellationToken::new();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        handoff.begin_claim().unwrap();
        handoff.hand(vec![row(1, a), row(2, b)]);
        handoff.next(&stop).await.unwrap();
        // Row 2 was not acked: only row 1 may go.
        handoff.settled(&[a, b], &[1]);

        let spec = handoff.begin_claim().unwrap();
        assert_eq!(spec.delete, vec![1]);
        handoff.claim_failed(spec);
        let spec = handoff.begin_claim().expect("the claim ended");
        assert_eq!(spec.delete, vec![1], "not lost with the failed claim");
        handoff.end_claim();
        assert_eq!(handoff.begin_claim().unwrap().delete, Vec::<i64>::new());
        handoff.end_claim();

        handoff.settled(&[], &[7]);
        assert_eq!(handoff.take_acked(), vec![7], "a stopping worker deletes");
        assert!(handoff.take_acked().is_empty());
    }

    #[tokio::test]
    async fn rows_in_flight_never_exceed_one_batch() {
        let handoff = Handoff::new(4, RowCap::new(3));
        let stop = CancellationToken::new();
        handoff.begin_claim().unwrap();
        handoff.hand(vec![row(1, Uuid::now_v7()), row(2, Uuid::now_v7())]);
        handoff.next(&stop).await.unwrap();
        assert_eq!(handoff.begin_claim().unwrap().limit, 1);
        handoff.hand(vec![row(3, Uuid::now_v7())]);
        handoff.next(&stop).await.unwrap();
        assert_eq!(handoff.begin_claim(), None, "a full batch is in flight");
    }

    #[tokio::test]
    async fn a_paused_worker_is_handed_nothing_and_a_stopped_one_takes_nothing() {
        let handoff = Handoff::new(4, RowCap::new(500));
        handoff.pause();
        assert_eq!(handoff.begin_claim(), None);
        handoff.resume();
        assert!(handoff.begin_claim().is_some());

        let stop = CancellationToken::new();
        stop.cancel();
        assert!(handoff.next(&stop).await.is_none());
    }

    #[tokio::test]
    async fn a_smaller_cap_holds_back_claims_until_rows_settle() {
        let cap = RowCap::new(500);
        let handoff = Handoff::new(4, cap.clone());
        let stop = CancellationToken::new();
        let order = Uuid::now_v7();
        handoff.begin_claim().unwrap();
        handoff.hand((1..=300).map(|id| row(id, order)).collect());
        handoff.next(&stop).await.unwrap();
        assert_eq!(
            cap.split(1_000, 5, 500),
            200,
            "more shards: a smaller share"
        );
        assert_eq!(handoff.max_rows(), 200);
        assert_eq!(handoff.begin_claim(), None, "300 in flight, over the cap");
        handoff.settled(&vec![order; 300], &[]);
        assert_eq!(handoff.begin_claim().unwrap().limit, 200);
    }
}
