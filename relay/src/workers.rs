//! The shard workers of one lease session: started on lease, supervised (a
//! worker that ended while its lease is held is restarted), stopped, and
//! given back in the background once they finished their batch.

use crate::handoff::{ClaimSpec, Handoff, RowCap};
use order_shared::db::outbox::OutboxSession;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The task of one leased shard, with its stop and hand-off handles.
struct RunningShard {
    stop: CancellationToken,
    handoff: Arc<Handoff>,
    handle: JoinHandle<()>,
}

/// The relay's rows in flight (`OUTBOX_MAX_ROWS_IN_FLIGHT`) and the most
/// one shard may have (`OUTBOX_BATCH_SIZE`).
#[derive(Debug, Clone, Copy)]
pub struct RowBudget {
    pub rows: usize,
    pub batch: usize,
}

/// Starts the worker of one shard: `(shard, handoff, stop) -> task`.
pub type SpawnWorker = Box<dyn Fn(i32, Arc<Handoff>, CancellationToken) -> JoinHandle<()> + Send>;

/// The shard workers of one session: started on lease, supervised (a
/// worker that ended while its lease is held is restarted), and given back
/// in the background.
pub struct ShardWorkers {
    spawn: SpawnWorker,
    /// Batches a shard may have waiting for acks (`OUTBOX_BATCHES_IN_FLIGHT`).
    batches_in_flight: usize,
    /// Rows in flight: the relay's budget (`OUTBOX_MAX_ROWS_IN_FLIGHT`),
    /// split among the running shards into each one's cap, at most one
    /// batch (`OUTBOX_BATCH_SIZE`).
    budget: RowBudget,
    row_cap: RowCap,
    running: HashMap<i32, RunningShard>,
    /// Shards being given back: stopped, lease not yet released.
    releasing: HashSet<i32>,
    released_tx: mpsc::UnboundedSender<i32>,
    released_rx: mpsc::UnboundedReceiver<i32>,
}

impl ShardWorkers {
    pub fn new(spawn: SpawnWorker, batches_in_flight: usize, budget: RowBudget) -> Self {
        let (released_tx, released_rx) = mpsc::unbounded_channel();
        ShardWorkers {
            spawn,
            batches_in_flight,
            row_cap: RowCap::new(budget.rows.min(budget.batch)),
            budget,
            running: HashMap::new(),
            releasing: HashSet::new(),
            released_tx,
            released_rx,
        }
    }

    /// Shards with a running worker.
    pub fn owned(&self) -> Vec<i32> {
        let mut owned: Vec<i32> = self.running.keys().copied().collect();
        owned.sort_unstable();
        owned
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Whether the shard is ours, working or being given back.
    pub fn holds(&self, shard: i32) -> bool {
        self.running.contains_key(&shard) || self.releasing.contains(&shard)
    }

    /// The rows each shard may have in flight now.
    pub fn row_cap(&self) -> usize {
        self.row_cap.get()
    }

    /// Splits the budget anew among the running shards.
    fn split_budget(&self) {
        let cap = self
            .row_cap
            .split(self.budget.rows, self.running.len(), self.budget.batch);
        metrics::gauge!("relay_shard_rows_cap").set(cap as f64);
    }

    pub fn start(&mut self, shard: i32) {
        let stop = CancellationToken::new();
        let handoff = Arc::new(Handoff::new(self.batches_in_flight, self.row_cap.clone()));
        let handle = (self.spawn)(shard, handoff.clone(), stop.clone());
        self.running.insert(
            shard,
            RunningShard {
                stop,
                handoff,
                handle,
            },
        );
        self.split_budget();
    }

    /// Polls the batches in flight left to the coordinator, of every owned
    /// shard (or only `only`): just before a claim, which deletes what they
    /// published ([`Handoff::poll_flights`]).
    pub fn poll_flights(&self, only: Option<i32>) {
        self.running
            .iter()
            .filter(|(shard, _)| only.is_none_or(|o| o == **shard))
            .for_each(|(_, w)| w.handoff.poll_flights());
    }

    /// Begins a claim for every owned shard (or only `only`) whose worker
    /// takes another batch now, in shard order: the shard, its hand-off (to
    /// hand the rows or end the claim) and what to claim.
    pub fn begin_claims(&self, only: Option<i32>) -> Vec<(i32, Arc<Handoff>, ClaimSpec)> {
        let mut shards: Vec<(&i32, &RunningShard)> = self
            .running
            .iter()
            .filter(|(shard, w)| only.is_none_or(|o| o == **shard) && !w.handle.is_finished())
            .collect();
        shards.sort_unstable_by_key(|(shard, _)| **shard);
        shards
            .into_iter()
            .filter_map(|(shard, w)| {
                let spec = w.handoff.begin_claim()?;
                Some((*shard, w.handoff.clone(), spec))
            })
            .collect()
    }

    /// Restarts every worker that ended although it was not stopped (it
    /// panicked, or gave up on its session); returns how many.
    pub async fn supervise(&mut self) -> usize {
        let ended: Vec<i32> = self
            .running
            .iter()
            .filter(|(_, w)| w.handle.is_finished() && !w.stop.is_cancelled())
            .map(|(shard, _)| *shard)
            .collect();
        for &shard in &ended {
            if let Some(worker) = self.running.remove(&shard) {
                match worker.handle.await {
                    Err(err) if err.is_panic() => {
                        metrics::counter!("relay_shard_worker_panics_total").increment(1);
                        tracing::error!(shard, error = %err, "Shard worker panicked; restarting it.");
                    }
                    _ => tracing::warn!(shard, "Shard worker ended; restarting it."),
                }
            }
            self.start(shard);
        }
        ended.len()
    }

    /// Stops the shard's worker and releases its lease once the worker
    /// finished its batch, or after `bound` (then the worker is aborted: its
    /// rows stay in the outbox). Runs in the background; `collect_released`
    /// forgets the shard once its lease is back.
    pub fn give_back(&mut self, shard: i32, session: &Arc<OutboxSession>, bound: Duration) {
        let Some(worker) = self.running.remove(&shard) else {
            return;
        };
        worker.stop.cancel();
        self.releasing.insert(shard);
        self.split_budget();
        let (session, done) = (session.clone(), self.released_tx.clone());
        tokio::spawn(async move {
            finish_or_abort(shard, worker.handle, tokio::time::Instant::now() + bound).await;
            match session.release(shard).await {
                Ok(()) => tracing::info!(shard, "Released shard lease."),
                Err(err) => tracing::warn!(shard, error = %err, "Releasing a shard lease failed."),
            }
            let _ = done.send(shard);
        });
    }

    /// Forgets the shards whose release finished.
    pub fn collect_released(&mut self) {
        while let Ok(shard) = self.released_rx.try_recv() {
            self.releasing.remove(&shard);
        }
    }

    /// Stops every worker and waits up to `bound` for them; aborts the rest.
    pub async fn stop_all(&mut self, bound: Duration) {
        for worker in self.running.values() {
            worker.stop.cancel();
        }
        let deadline = tokio::time::Instant::now() + bound;
        for (shard, worker) in self.running.drain() {
            finish_or_abort(shard, worker.handle, deadline).await;
        }
    }
}

/// Waits for a stopped worker to finish its batch until `deadline`, then
/// aborts it (its rows stay in the outbox).
async fn finish_or_abort(shard: i32, mut handle: JoinHandle<()>, deadline: tokio::time::Instant) {
    if tokio::time::timeout_at(deadline, &mut handle)
        .await
        .is_err()
    {
        tracing::warn!(
            shard,
            "Shard worker did not finish its batch in time; aborting it (rows stay in the outbox)."
        );
        handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_panicked_worker_is_restarted_and_a_stopped_one_is_not() {
        let starts = Arc::new(AtomicUsize::new(0));
        let counted = starts.clone();
        let mut workers = ShardWorkers::new(
            Box::new(move |_shard, _handoff, stop| {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if n == 0 {
                        panic!("first run of the worker fails");
                    }
                    stop.cancelled().await;
                })
            }),
            1,
            RowBudget {
                rows: 500,
                batch: 500,
            },
        );
        workers.start(3);
        tokio::time::sleep(Duration::from_millis(50)).await;

        assert_eq!(workers.supervise().await, 1, "the panicked worker restarts");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(workers.supervise().await, 0, "the new one keeps running");
        assert_eq!(starts.load(Ordering::SeqCst), 2);
        assert_eq!(workers.owned(), vec![3]);

        workers.stop_all(Duration::from_secs(1)).await;
        assert!(workers.is_empty());
        assert_eq!(starts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_row_budget_is_split_among_the_running_shards() {
        let idle: SpawnWorker =
            Box::new(|_shard, _handoff, stop| tokio::spawn(async move { stop.cancelled().await }));
        let budget = RowBudget {
            rows: 1_000,
            batch: 500,
        };
        let mut workers = ShardWorkers::new(idle, 2, budget);
        let limits = |w: &ShardWorkers| -> Vec<i64> {
            let claims = w.begin_claims(None);
            let limits = claims.iter().map(|(_, _, spec)| spec.limit).collect();
            claims
                .iter()
                .for_each(|(_, handoff, _)| handoff.end_claim());
            limits
        };
        workers.start(0);
        assert_eq!(limits(&workers), vec![500], "one shard: one whole batch");
        for shard in 1..4 {
            workers.start(shard);
        }
        assert_eq!(workers.row_cap(), 250);
        assert_eq!(
            limits(&workers),
            vec![250; 4],
            "the shard started first too"
        );
        for shard in 4..2_000 {
            workers.start(shard);
        }
        assert_eq!(workers.row_cap(), 1, "at least one row each");
        assert_eq!(workers.len(), 2_000);
        workers.stop_all(Duration::from_secs(1)).await;
    }
}
