//! Deletes of published rows, merged: one `DELETE` runs on the session at
//! a time, and the rows of every shard that settled while it ran go in the
//! next one together (like a group commit).
//!
//! Why: every query of the relay shares the lease session's one connection,
//! and the server runs them in the order they were sent. With one delete
//! per settled batch, a claim sent after the acks of a dozen shards waited
//! for a dozen deletes (each its own transaction and commit) before the
//! server even began it: at 1,000 orders/s the claim statement took p50 1.1
//! / p99 6-16 ms from the relay's side against p50 0.13 / p99 1.2 ms on the
//! server (`log_min_duration_statement`), and most rows whose commit ->
//! send went past 12 ms had waited in such a claim (docs/benchmarks.md,
//! sixth pass).

use crate::StoreError;
use std::sync::{Arc, Mutex, OnceLock};

/// How a merged delete ended, for each caller whose rows were in it.
type Outcome = OnceLock<Result<(), String>>;

/// The merged delete of one caller failed; the message is the error of the
/// statement that carried its rows.
#[derive(Debug, thiserror::Error)]
#[error("deleting published outbox rows failed: {0}")]
pub struct MergedDeleteFailed(String);

/// Rows waiting for the next delete, and the one delete at a time.
#[derive(Default)]
pub(super) struct DeleteQueue {
    waiting: Mutex<Vec<(Vec<i64>, Arc<Outcome>)>>,
    /// Held while a delete runs; its waiters are served in arrival order.
    running: tokio::sync::Mutex<()>,
}

impl DeleteQueue {
    /// Deletes `ids` with `run`, in one statement with the ids of every
    /// other caller waiting at that moment. Whoever gets the turn first
    /// runs the statement for all of them; the others find their outcome
    /// set when their turn comes. A caller dropped while its statement ran
    /// leaves the others' ids undeleted: they run them at their turn.
    pub(super) async fn delete<F, Fut>(&self, ids: &[i64], run: F) -> Result<(), StoreError>
    where
        F: FnOnce(Vec<i64>) -> Fut,
        Fut: std::future::Future<Output = Result<u64, StoreError>>,
    {
        let mine = Arc::new(Outcome::new());
        self.waiting_list().push((ids.to_vec(), mine.clone()));
        let _turn = self.running.lock().await;
        if let Some(outcome) = mine.get() {
            return outcome.clone().map_err(merged_failure);
        }
        let mut batch = std::mem::take(&mut *self.waiting_list());
        if !batch.iter().any(|(_, o)| Arc::ptr_eq(o, &mine)) {
            // Taken by a caller that was dropped before it answered.
            batch.push((ids.to_vec(), mine.clone()));
        }
        let all: Vec<i64> = batch
            .iter()
            .flat_map(|(ids, _)| ids.iter().copied())
            .collect();
        let result = run(all).await;
        let shared = result.as_ref().map(|_| ()).map_err(ToString::to_string);
        for (_, outcome) in &batch {
            let _ = outcome.set(shared.clone());
        }
        result.map(|_| ())
    }

    fn waiting_list(&self) -> std::sync::MutexGuard<'_, Vec<(Vec<i64>, Arc<Outcome>)>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn merged_failure(message: String) -> StoreError {
    StoreError::Unavailable(Box::new(MergedDeleteFailed(message)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    type Statement = std::pin::Pin<Box<dyn Future<Output = Result<u64, StoreError>> + Send>>;

    /// A stand-in for the statement: records each call's ids, takes a while.
    fn recorder(calls: Arc<Mutex<Vec<Vec<i64>>>>, fail: bool) -> impl Fn(Vec<i64>) -> Statement {
        move |ids: Vec<i64>| {
            let calls = calls.clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(40)).await;
                let n = ids.len() as u64;
                calls.lock().unwrap().push(ids);
                if fail {
                    Err(StoreError::Corrupt("injected".into()))
                } else {
                    Ok(n)
                }
            })
        }
    }

    #[tokio::test]
    async fn callers_waiting_on_a_running_delete_share_the_next_one() {
        let queue = Arc::new(DeleteQueue::default());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let run = recorder(calls.clone(), false);
        let first = queue.delete(&[1], &run);
        let others = async {
            // Arrive while the first delete runs.
            tokio::time::sleep(Duration::from_millis(5)).await;
            futures_util::future::join3(
                queue.delete(&[2, 3], &run),
                queue.delete(&[4], &run),
                queue.delete(&[5], &run),
            )
            .await
        };
        let (a, (b, c, d)) = tokio::join!(first, others);
        for r in [a, b, c, d] {
            r.unwrap();
        }
        let mut calls = calls.lock().unwrap().clone();
        calls[1].sort_unstable();
        assert_eq!(
            calls,
            vec![vec![1], vec![2, 3, 4, 5]],
            "two statements for four callers"
        );
    }

    #[tokio::test]
    async fn a_failed_merged_delete_fails_every_caller_in_it() {
        let queue = Arc::new(DeleteQueue::default());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let run = recorder(calls.clone(), true);
        let (a, b) = tokio::join!(queue.delete(&[1], &run), async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tokio::join!(queue.delete(&[2], &run), queue.delete(&[3], &run))
        });
        assert!(a.is_err());
        let (b, c) = b;
        assert!(b.unwrap_err().to_string().contains("injected"));
        assert!(c.unwrap_err().to_string().contains("injected"));
        assert_eq!(calls.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn rows_taken_by_a_caller_dropped_mid_delete_are_deleted_by_their_own_caller() {
        let queue = Arc::new(DeleteQueue::default());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let spawn_delete = |ids: Vec<i64>| {
            let (queue, run) = (queue.clone(), recorder(calls.clone(), false));
            tokio::spawn(async move { queue.delete(&ids, &run).await })
        };
        // A runs; B and C wait for their turn, in that order.
        let a = spawn_delete(vec![1]);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let run_b = recorder(calls.clone(), false);
        // Boxed, so that dropping it drops the future (and its turn).
        let mut b = Box::pin(queue.delete(&[2], &run_b));
        let waiting = tokio::time::timeout(Duration::from_millis(1), &mut b).await;
        assert!(waiting.is_err(), "B waits for A");
        let c = spawn_delete(vec![3]);
        tokio::time::sleep(Duration::from_millis(2)).await;
        // B gets its turn once A is done, takes C's rows with its own, and
        // is dropped while that statement runs.
        let cut = tokio::time::timeout(Duration::from_millis(50), &mut b).await;
        assert!(cut.is_err(), "B is still running its statement");
        a.await.unwrap().unwrap();
        drop(b);
        c.await.unwrap().expect("C's delete succeeds");
        let calls = calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![vec![1], vec![3]],
            "C deleted its own rows again"
        );
    }
}
