//! Outbox queries for figures and operators: backlog gauges, the parked
//! rows, and re-queueing them (`order-relay outbox parked|replay`).

use super::rows::{CHANNEL, OutboxStats, ParkedRow};
use crate::StoreError;

/// Backlog, age of the oldest unpublished row, parked rows.
pub async fn stats(client: &impl crate::db::GenericClient) -> Result<OutboxStats, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT count(*) FILTER (WHERE parked_at IS NULL), \
             coalesce(extract(epoch FROM clock_timestamp() - min(created_at) \
                 FILTER (WHERE parked_at IS NULL)), 0)::float8, \
             count(*) FILTER (WHERE parked_at IS NOT NULL) FROM outbox",
        )
        .await?;
    let row = client.query_one(&stmt, &[]).await?;
    Ok(OutboxStats {
        backlog: row.try_get(0)?,
        oldest_age_seconds: row.try_get(1)?,
        parked: row.try_get(2)?,
    })
}

/// Parked rows in id order.
pub async fn parked_rows(
    client: &impl crate::db::GenericClient,
) -> Result<Vec<ParkedRow>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT id, event_id, aggregate_id, aggregate_version, event_type, attempts, \
             last_error, parked_at FROM outbox WHERE parked_at IS NOT NULL ORDER BY id",
        )
        .await?;
    let rows = client.query(&stmt, &[]).await?;
    rows.iter()
        .map(|r| {
            Ok(ParkedRow {
                id: r.try_get(0)?,
                event_id: r.try_get(1)?,
                order_id: r.try_get(2)?,
                version: r.try_get(3)?,
                event_type: r.try_get(4)?,
                attempts: r.try_get(5)?,
                last_error: r.try_get(6)?,
                parked_at: r.try_get(7)?,
            })
        })
        .collect()
}

/// Re-queues parked rows (one by id, or all) and wakes their shards.
/// Returns how many rows were re-queued.
pub async fn replay_parked(
    client: &impl crate::db::GenericClient,
    id: Option<i64>,
) -> Result<u64, StoreError> {
    let stmt = client
        .prepare_cached(
            "WITH r AS (UPDATE outbox SET parked_at = NULL, attempts = 0, last_error = NULL \
             WHERE parked_at IS NOT NULL AND ($1::int8 IS NULL OR id = $1) RETURNING shard), \
             n AS (SELECT pg_notify($2, s::text) FROM (SELECT DISTINCT shard AS s FROM r) d) \
             SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM n)",
        )
        .await?;
    let row = client.query_one(&stmt, &[&id, &CHANNEL]).await?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}
