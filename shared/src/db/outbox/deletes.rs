//! Deleting published rows, merged. The relay's shards settle their batches
//! at about the same moments (one produce response acks records of many of
//! them), and each delete was a statement and a commit of its own beside
//! the writers' commits. A delete asked for while another runs waits for
//! it, then goes with every other one asked meanwhile in one statement.

use crate::StoreError;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::oneshot;

/// What a waiting delete is told: done, or why not.
type Reply = oneshot::Sender<Result<(), String>>;

/// The deletes asked for and not yet sent, and whose turn it is to send.
#[derive(Default)]
pub(super) struct DeleteQueue {
    pending: Mutex<Vec<(Vec<i64>, Reply)>>,
    turn: tokio::sync::Mutex<()>,
}

impl DeleteQueue {
    fn pending(&self) -> MutexGuard<'_, Vec<(Vec<i64>, Reply)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes `ids` with `send` (one statement for the ids it is given),
    /// together with the deletes asked for meanwhile. Returns how many ids
    /// were asked; an error fails every delete of the statement.
    pub(super) async fn delete<F, Fut>(&self, ids: &[i64], send: F) -> Result<u64, StoreError>
    where
        F: FnOnce(Vec<i64>) -> Fut,
        Fut: Future<Output = Result<u64, StoreError>>,
    {
        let (reply, answer) = oneshot::channel();
        self.pending().push((ids.to_vec(), reply));
        {
            // Whoever has the turn sends everything pending, ours included
            // unless an earlier turn took it already.
            let _turn = self.turn.lock().await;
            let batch = std::mem::take(&mut *self.pending());
            if !batch.is_empty() {
                let all: Vec<i64> = batch.iter().flat_map(|(ids, _)| ids).copied().collect();
                let done = send(all).await.map(drop).map_err(|e| e.to_string());
                for (_, reply) in batch {
                    let _ = reply.send(done.clone());
                }
            }
        }
        match answer.await {
            Ok(Ok(())) => Ok(ids.len() as u64),
            Ok(Err(reason)) => Err(StoreError::Unavailable(reason.into())),
            Err(_) => Err(StoreError::Unavailable(
                "the delete was abandoned before it was sent".into(),
            )),
        }
    }
}
