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
//! A batch that is not full settles in the coordinator's polls
//! ([`Flights`]).

use crate::flights::{Flight, Flights, Report};
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
    /// Sent batches that are not full, polled by the coordinator.
    flights: Flights,
}

/// What the worker takes next.
pub enum Next {
    /// A batch to send.
    Batch(Vec<OutboxRow>),
    /// A polled batch that failed: the worker records it and backs off.
    Settled(Report),
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
    /// A polled batch published since the worker last looked: its backoff
    /// starts again from the shortest delay.
    published: bool,
}

impl Handoff {
    pub fn new(max_in_flight: usize, max_rows: RowCap) -> Self {
        Handoff {
            max_in_flight: max_in_flight.max(1),
            max_rows,
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            flights: Flights::default(),
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

    /// The next batch, counted in flight until [`settled`](Self::settled),
    /// or a polled batch's failure; `None` once `stop` is cancelled.
    pub(crate) async fn next(&self, stop: &CancellationToken) -> Option<Next> {
        loop {
            if let Some(report) = self.flights.report() {
                return Some(Next::Settled(report));
            }
            {
                let mut s = self.state();
                if let Some(rows) = s.queued.take() {
                    s.in_flight += 1;
                    return Some(Next::Batch(rows));
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

    /// The next polled batch's failure, for a paused worker (which takes
    /// no batch).
    pub(crate) async fn next_report(&self) -> Report {
        loop {
            if let Some(report) = self.flights.report() {
                return report;
            }
            // A permit left for a batch only wakes this loop once: the
            // batch stays queued for `next`, which looks before it waits.
            self.ready.notified().await;
        }
    }

    /// Leaves a sent batch that is not full to the coordinator's polls;
    /// polls it once now, so that its acks, when they come, are timed.
    pub(crate) fn fly(&self, flight: Flight) {
        self.flights.fly(flight);
        self.poll_flights();
    }

    /// Polls the batches left to the coordinator (without a waker): one
    /// that published is settled here, before the claim that deletes its
    /// rows; the worker is woken only for a failure.
    pub fn poll_flights(&self) {
        let reported = self.flights.poll(|orders, acked| {
            self.settled(orders, acked);
            self.state().published = true;
        });
        if reported {
            self.ready.notify_one();
        }
    }

    /// The polled batches and failures left, for a worker that stops.
    pub(crate) fn take_flights(&self) -> (Vec<Flight>, Vec<Report>) {
        self.flights.take()
    }

    /// Whether a polled batch published since the last call.
    pub(crate) fn take_published(&self) -> bool {
        std::mem::take(&mut self.state().published)
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
mod tests;
