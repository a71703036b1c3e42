//! The rows of one leased shard: claim the next rows in id order, delete
//! them once the broker acknowledged them, count a failed attempt and park
//! a row that keeps failing. All through the lease session, so a session
//! that died or timed out stops this work too.

use super::rows::OutboxRow;
use super::session::OutboxSession;
use crate::StoreError;

impl OutboxSession {
    /// The next rows of a shard in id order. With `include_parked`, parked
    /// rows are returned too (so the caller can stop at them); without, the
    /// rows of an order behind one of its parked rows are left out too.
    pub async fn claim(
        &self,
        shard: i32,
        limit: i64,
        include_parked: bool,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = self
            .timed(
                self.client
                    .query(&self.stmts.claim, &[&shard, &limit, &include_parked]),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxRow {
                    id: r.try_get(0)?,
                    event_id: r.try_get(1)?,
                    order_id: r.try_get(2)?,
                    version: r.try_get(3)?,
                    event_type: r.try_get(4)?,
                    topic: r.try_get(5)?,
                    payload: r.try_get(6)?,
                    headers: r.try_get(7)?,
                    created_at: r.try_get(8)?,
                    attempts: r.try_get(9)?,
                    parked: r.try_get(10)?,
                    user_id: r.try_get(11)?,
                })
            })
            .collect()
    }

    /// Deletes published rows (only ever after the broker acked them).
    pub async fn delete(&self, ids: &[i64]) -> Result<u64, StoreError> {
        self.timed(self.client.execute(&self.stmts.delete, &[&ids]))
            .await
    }

    /// Counts a failed attempt; parks the row at `max_attempts`. Returns
    /// whether the row is now parked.
    pub async fn record_failure(
        &self,
        id: i64,
        error: &str,
        max_attempts: i32,
    ) -> Result<bool, StoreError> {
        let row = self
            .timed(
                self.client
                    .query_opt(&self.stmts.fail, &[&id, &error, &max_attempts]),
            )
            .await?;
        match row {
            Some(r) => Ok(r.try_get(0)?),
            None => Ok(false),
        }
    }
}
