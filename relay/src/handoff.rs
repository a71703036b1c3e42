//! The hand-off between the coordinator, which claims rows for its ready
//! shards in one statement, and each shard's worker, which publishes them.
//!
//! A shard may have up to `OUTBOX_BATCHES_IN_FLIGHT` batches sent and
//! waiting for their acknowledgements, so that new rows do not wait behind
//! a slow ack. Order per order still holds because the orders of the
//! batches in flight are excluded from the next claim: an order's rows are
//! in one batch at a time, and a row that failed still holds back its
//! order's later rows (they are claimed only after the failure was
//! recorded).

use order_shared::db::outbox::OutboxRow;
use std::collections::HashSet;
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How the coordinator hands a shard's worker the rows it claimed for it.
/// Only the coordinator claims (one claim at a time), and it claims only
/// for a shard that [`accepts`](Handoff::accepts) a batch, excluding the
/// [`orders in flight`](Handoff::orders_in_flight).
#[derive(Debug)]
pub struct Handoff {
    max_in_flight: usize,
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Handed, not yet taken by the worker.
    queued: Option<Vec<OutboxRow>>,
    /// Batches taken and not yet settled (acked and deleted, or failed and
    /// recorded).
    in_flight: usize,
    /// The orders of the queued and in-flight batches.
    orders: HashSet<Uuid>,
    /// The worker takes nothing for now (backing off after an error, or
    /// stopped at a parked row).
    paused: bool,
}

impl Handoff {
    pub fn new(max_in_flight: usize) -> Self {
        Handoff {
            max_in_flight: max_in_flight.max(1),
            state: Mutex::new(State::default()),
            ready: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the worker takes another batch now.
    pub fn accepts(&self) -> bool {
        let s = self.state();
        !s.paused && s.queued.is_none() && s.in_flight < self.max_in_flight
    }

    /// Whether nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        let s = self.state();
        s.queued.is_none() && s.in_flight == 0
    }

    /// The orders whose rows are queued or in flight: the next claim must
    /// leave them out.
    pub fn orders_in_flight(&self) -> Vec<Uuid> {
        self.state().orders.iter().copied().collect()
    }

    /// Gives the worker its next batch (only when it [`accepts`](Self::accepts)).
    pub fn hand(&self, rows: Vec<OutboxRow>) {
        let mut s = self.state();
        s.orders.extend(rows.iter().map(|r| r.order_id));
        match s.queued.as_mut() {
            // Never expected (the coordinator hands only to a shard that
            // accepts); kept in id order rather than lost.
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

    /// A batch taken with [`next`](Self::next) is done: its rows are
    /// deleted or their failure recorded, so its orders may be claimed again.
    pub(crate) fn settled(&self, orders: &[Uuid]) {
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(1);
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
            user_id: None,
        }
    }

    #[tokio::test]
    async fn orders_stay_excluded_from_claims_until_their_batch_settled() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let handoff = Handoff::new(2);
        let stop = CancellationToken::new();
        assert!(handoff.accepts() && handoff.is_idle());

        handoff.hand(vec![row(1, a), row(2, a)]);
        assert!(!handoff.accepts(), "one batch queued at a time");
        assert_eq!(handoff.orders_in_flight(), vec![a], "queued counts");
        let first = handoff.next(&stop).await.unwrap();
        assert_eq!(first.len(), 2);
        assert!(
            handoff.accepts(),
            "a second batch may go while the first waits"
        );

        handoff.hand(vec![row(3, b)]);
        let second = handoff.next(&stop).await.unwrap();
        assert_eq!(second[0].id, 3);
        assert!(!handoff.accepts(), "two in flight: the limit");
        let mut orders = handoff.orders_in_flight();
        orders.sort();
        assert_eq!(orders, vec![a, b]);

        handoff.settled(&[b]);
        assert_eq!(handoff.orders_in_flight(), vec![a], "a's batch still waits");
        assert!(handoff.accepts());
        handoff.settled(&[a]);
        assert!(handoff.orders_in_flight().is_empty() && handoff.is_idle());
    }

    #[tokio::test]
    async fn a_paused_worker_is_handed_nothing_and_a_stopped_one_takes_nothing() {
        let handoff = Handoff::new(4);
        handoff.pause();
        assert!(!handoff.accepts());
        handoff.resume();
        assert!(handoff.accepts());

        let stop = CancellationToken::new();
        stop.cancel();
        assert!(handoff.next(&stop).await.is_none());
    }
}
