//! The rows of one leased shard: claim the next rows in id order, delete
//! them once the broker acknowledged them, count a failed attempt and park
//! a row that keeps failing. All through the lease session, so a session
//! that died or timed out stops this work too.

use super::rows::OutboxRow;
use super::session::OutboxSession;
use crate::StoreError;
use futures_util::TryStreamExt;
use uuid::Uuid;

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
        let mut claimed = self
            .claim_many(&[shard], &[limit], include_parked, &[])
            .await?;
        Ok(claimed.pop().map(|(_, rows)| rows).unwrap_or_default())
    }

    /// The plan of the claim statement this session prepared, as
    /// `EXPLAIN EXECUTE` gives it for `shards` shards (0 to `shards - 1`)
    /// of up to `limit` rows each, parked rows included or not (for tests).
    #[cfg(feature = "testing")]
    pub async fn explain_claim(
        &self,
        shards: i32,
        limit: i64,
        include_parked: bool,
    ) -> Result<String, StoreError> {
        let list =
            |item: &dyn Fn(i32) -> String| (0..shards).map(item).collect::<Vec<_>>().join(",");
        let args = format!(
            "'{{{}}}', '{{{}}}', {include_parked}, '{{}}'",
            list(&|shard| shard.to_string()),
            list(&|_| limit.to_string()),
        );
        self.explain_prepared("SELECT c.* FROM unnest(%", &args)
            .await
    }

    /// The plan of the delete statement this session prepared, for `ids`
    /// (for tests).
    #[cfg(feature = "testing")]
    pub async fn explain_delete(&self, ids: &[i64]) -> Result<String, StoreError> {
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        let args = format!("'{{{}}}'", ids.join(","));
        self.explain_prepared("DELETE FROM outbox WHERE id = ANY(%", &args)
            .await
    }

    /// A setting of this session (`current_setting`), for tests.
    #[cfg(feature = "testing")]
    pub async fn setting(&self, name: &str) -> Result<String, StoreError> {
        let row = self
            .timed(
                self.client
                    .query_one("SELECT current_setting($1)", &[&name]),
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    /// `EXPLAIN EXECUTE` of the statement this session prepared whose text
    /// is `LIKE pattern`, with `args` (SQL literals): the plan it runs now.
    #[cfg(feature = "testing")]
    async fn explain_prepared(&self, pattern: &str, args: &str) -> Result<String, StoreError> {
        let name: String = self
            .timed(self.client.query_one(
                "SELECT name FROM pg_prepared_statements WHERE statement LIKE $1",
                &[&pattern],
            ))
            .await?
            .try_get(0)?;
        let sql = format!("EXPLAIN EXECUTE {name}({args})");
        let rows = self.timed(self.client.simple_query(&sql)).await?;
        Ok(rows
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// [`claim`](Self::claim) for several shards in one statement: up to
    /// `limits[i]` rows of `shards[i]`, grouped by shard (only shards with
    /// rows). The
    /// rows of the orders in `in_flight` (batches sent and not yet settled)
    /// are left out, so an order's rows are never in two batches at once.
    pub async fn claim_many(
        &self,
        shards: &[i32],
        limits: &[i64],
        include_parked: bool,
        in_flight: &[Uuid],
    ) -> Result<Vec<(i32, Vec<OutboxRow>)>, StoreError> {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&shards, &limits, &include_parked, &in_flight];
        // Converted row by row as they arrive, rather than collected as
        // `Row`s first: a claim for every shard may bring thousands of rows.
        self.timed(async {
            let stream = self
                .client
                .query_raw(&self.stmts.claim, params.iter().copied())
                .await?;
            futures_util::pin_mut!(stream);
            let mut claimed: Vec<(i32, Vec<OutboxRow>)> = Vec::new();
            while let Some(r) = stream.try_next().await? {
                let shard: i32 = r.try_get(0)?;
                let row = OutboxRow::from_columns(&r, 1)?;
                match claimed.last_mut() {
                    Some((last, batch)) if *last == shard => batch.push(row),
                    _ => claimed.push((shard, vec![row])),
                }
            }
            Ok::<_, tokio_postgres::Error>(claimed)
        })
        .await
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
