//! The relay's side of the outbox: one PostgreSQL session per relay process
//! that holds the shard leases (advisory locks), listens for new-row hints,
//! and claims, deletes and parks rows. Every query of a relay goes through
//! this session (tokio-postgres pipelines concurrent queries), so when the
//! session dies the leases and the work stop together.

use super::{DbSettings, pg_config};
use crate::StoreError;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Statement};
use uuid::Uuid;

/// Advisory-lock class of shard leases: `pg_advisory_lock(SHARD_CLASS, shard)`.
pub const SHARD_CLASS: i32 = 0x4f52_4453; // "ORDS"
/// Advisory-lock class of relay membership: one lock per live relay.
pub const MEMBER_CLASS: i32 = 0x4f52_444d; // "ORDM"
/// NOTIFY channel; the payload is the shard number.
pub const CHANNEL: &str = "order_outbox";

/// One outbox row as the relay publishes it.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub event_id: Uuid,
    pub order_id: Uuid,
    pub version: i64,
    pub event_type: String,
    pub topic: String,
    /// The Kafka record value: the JSON envelope as text.
    pub payload: String,
    pub headers: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
    pub parked: bool,
}

/// A parked row, for `order-relay outbox parked`.
#[derive(Debug, Clone)]
pub struct ParkedRow {
    pub id: i64,
    pub event_id: Uuid,
    pub order_id: Uuid,
    pub version: i64,
    pub event_type: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub parked_at: DateTime<Utc>,
}

/// Backlog figures for the gauges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxStats {
    pub backlog: i64,
    pub oldest_age_seconds: f64,
    pub parked: i64,
}

struct Statements {
    claim: Statement,
    delete: Statement,
    fail: Statement,
    try_lock: Statement,
    unlock: Statement,
    members: Statement,
    held: Statement,
    probe: Statement,
}

/// The relay's database session. Cheap to share (`Arc`); queries from
/// several tasks are pipelined on the one connection.
pub struct OutboxSession {
    client: Client,
    stmts: Statements,
    member_id: i32,
}

impl std::fmt::Debug for OutboxSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxSession")
            .field("member_id", &self.member_id)
            .finish()
    }
}

/// What the session's connection task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A NOTIFY on [`CHANNEL`] for this shard.
    NewRows(i32),
    /// The connection ended: every lease is gone.
    Closed,
}

impl OutboxSession {
    /// Connects, registers as a member, LISTENs, and prepares the statements.
    /// Session events (notifications, loss) arrive on the returned receiver.
    pub async fn connect(
        settings: &DbSettings,
    ) -> Result<(OutboxSession, mpsc::UnboundedReceiver<SessionEvent>), StoreError> {
        let mut config = pg_config(settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        config.application_name("order-relay");
        let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if let Ok(shard) = n.payload().parse::<i32>() {
                            let _ = tx.send(SessionEvent::NewRows(shard));
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, "Relay database session failed.");
                        break;
                    }
                    None => break,
                }
            }
            let _ = tx.send(SessionEvent::Closed);
        });
        let stmts = Statements {
            claim: client
                .prepare(
                    "SELECT id, event_id, aggregate_id, aggregate_version, event_type, topic, \
                     payload::text, headers, created_at, attempts, parked_at IS NOT NULL \
                     FROM outbox WHERE shard = $1 AND ($3 OR parked_at IS NULL) \
                     ORDER BY id LIMIT $2",
                )
                .await?,
            delete: client
                .prepare("DELETE FROM outbox WHERE id = ANY($1)")
                .await?,
            fail: client
                .prepare(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = left($2, 2000), \
                     parked_at = CASE WHEN attempts + 1 >= $3 THEN now() END \
                     WHERE id = $1 RETURNING parked_at IS NOT NULL",
                )
                .await?,
            try_lock: client
                .prepare("SELECT pg_try_advisory_lock($1::int4, $2::int4)")
                .await?,
            unlock: client
                .prepare("SELECT pg_advisory_unlock($1::int4, $2::int4)")
                .await?,
            members: client
                .prepare(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                     AND classid::int8 = $1 AND objsubid = 2 \
                     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                )
                .await?,
            held: client
                .prepare(
                    "SELECT objid::int8 FROM pg_locks WHERE locktype = 'advisory' AND granted \
                     AND classid::int8 = $1 AND objsubid = 2 \
                     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                )
                .await?,
            probe: client
                .prepare(
                    "SELECT s FROM unnest($1::int4[]) AS s WHERE EXISTS \
                     (SELECT 1 FROM outbox WHERE shard = s AND parked_at IS NULL)",
                )
                .await?,
        };
        // A random member id; retry on the (unlikely) collision.
        let mut member_id = 0;
        for _ in 0..10 {
            let candidate = (Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff) as i32;
            let row = client
                .query_one(&stmts.try_lock, &[&MEMBER_CLASS, &candidate])
                .await?;
            if row.get::<_, bool>(0) {
                member_id = candidate;
                break;
            }
        }
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok((
            OutboxSession {
                client,
                stmts,
                member_id,
            },
            rx,
        ))
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Live relays on this database (sessions holding a member lock).
    pub async fn member_count(&self) -> Result<i64, StoreError> {
        let row = self
            .client
            .query_one(&self.stmts.members, &[&i64::from(MEMBER_CLASS)])
            .await?;
        Ok(row.get(0))
    }

    /// Shards leased by any relay right now.
    pub async fn leased_shards(&self) -> Result<HashSet<i32>, StoreError> {
        let rows = self
            .client
            .query(&self.stmts.held, &[&i64::from(SHARD_CLASS)])
            .await?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as i32).collect())
    }

    /// Which of `shards` have unparked rows: one cheap query (an index probe
    /// per shard) that the relay runs every poll interval as its wake-up.
    pub async fn shards_with_rows(&self, shards: &[i32]) -> Result<Vec<i32>, StoreError> {
        let rows = self.client.query(&self.stmts.probe, &[&shards]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Takes the lease of `shard` if nobody holds it.
    pub async fn try_lease(&self, shard: i32) -> Result<bool, StoreError> {
        let row = self
            .client
            .query_one(&self.stmts.try_lock, &[&SHARD_CLASS, &shard])
            .await?;
        Ok(row.get(0))
    }

    /// Gives the lease of `shard` back.
    pub async fn release(&self, shard: i32) -> Result<(), StoreError> {
        self.client
            .query_one(&self.stmts.unlock, &[&SHARD_CLASS, &shard])
            .await?;
        Ok(())
    }

    /// The next rows of a shard in id order. With `include_parked`, parked
    /// rows are returned too (so the caller can stop at them).
    pub async fn claim(
        &self,
        shard: i32,
        limit: i64,
        include_parked: bool,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = self
            .client
            .query(&self.stmts.claim, &[&shard, &limit, &include_parked])
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
                })
            })
            .collect()
    }

    /// Deletes published rows (only ever after the broker acked them).
    pub async fn delete(&self, ids: &[i64]) -> Result<u64, StoreError> {
        Ok(self.client.execute(&self.stmts.delete, &[&ids]).await?)
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
            .client
            .query_opt(&self.stmts.fail, &[&id, &error, &max_attempts])
            .await?;
        Ok(row.is_some_and(|r| r.get(0)))
    }
}

/// Backlog, age of the oldest unpublished row, parked rows.
pub async fn stats(client: &impl super::GenericClient) -> Result<OutboxStats, StoreError> {
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
pub async fn parked_rows(client: &impl super::GenericClient) -> Result<Vec<ParkedRow>, StoreError> {
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
    client: &impl super::GenericClient,
    id: Option<i64>,
) -> Result<u64, StoreError> {
    let stmt = client
        .prepare_cached(
            "WITH r AS (UPDATE outbox SET parked_at = NULL, attempts = 0, last_error = NULL \
             WHERE parked_at IS NOT NULL AND ($1::int8 IS NULL OR id = $1) RETURNING shard), \
             n AS (SELECT pg_notify('order_outbox', s::text) FROM (SELECT DISTINCT shard AS s FROM r) d) \
             SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM n)",
        )
        .await?;
    let row = client.query_one(&stmt, &[&id]).await?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}
