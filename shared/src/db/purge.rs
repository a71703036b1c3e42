//! Removing old rows in small batches: expired idempotency keys (api) and
//! old inbox rows (relay). Every replica may run it; the DELETEs are cheap
//! and commute.

use super::GenericClient;
use crate::StoreError;
use deadpool_postgres::Pool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Rows deleted per statement, so that no purge holds many locks at once.
pub const PURGE_BATCH: i64 = 1000;

/// What to purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// `idempotency_keys` whose `expires_at` has passed.
    ExpiredIdempotencyKeys,
    /// `processed_events` (the consumer's inbox) older than the retention.
    ProcessedEvents {
        /// `INBOX_RETENTION_HOURS`.
        older_than: Duration,
    },
}

impl Purge {
    /// The table, for logs.
    pub fn table(self) -> &'static str {
        match self {
            Purge::ExpiredIdempotencyKeys => "idempotency_keys",
            Purge::ProcessedEvents { .. } => "processed_events",
        }
    }

    /// Deletes at most `limit` rows; returns how many.
    pub async fn batch(self, client: &impl GenericClient, limit: i64) -> Result<u64, StoreError> {
        Ok(match self {
            Purge::ExpiredIdempotencyKeys => {
                let stmt = client
                    .prepare_cached(
                        "DELETE FROM idempotency_keys WHERE (user_id, key) IN (\
                         SELECT user_id, key FROM idempotency_keys \
                         WHERE expires_at <= now() LIMIT $1)",
                    )
                    .await?;
                client.execute(&stmt, &[&limit]).await?
            }
            Purge::ProcessedEvents { older_than } => {
                let stmt = client
                    .prepare_cached(
                        "DELETE FROM processed_events WHERE (scope, event_key) IN (\
                         SELECT scope, event_key FROM processed_events \
                         WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2)",
                    )
                    .await?;
                client
                    .execute(&stmt, &[&older_than.as_secs_f64(), &limit])
                    .await?
            }
        })
    }

    /// Deletes every matching row, [`PURGE_BATCH`] at a time; returns how many.
    pub async fn all(self, pool: &Pool) -> Result<u64, StoreError> {
        let client = pool.get().await?;
        let mut total = 0;
        loop {
            let n = self.batch(&client, PURGE_BATCH).await?;
            total += n;
            if n < PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Purges now and then every `every`, until `shutdown` fires; logs what
    /// it deleted and why it could not.
    pub async fn run_every(self, pool: Pool, every: Duration, shutdown: CancellationToken) {
        loop {
            match self.all(&pool).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(table = self.table(), deleted = n, "Purged old rows."),
                Err(e) => tracing::warn!(table = self.table(), error = %e, "Purging failed."),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
