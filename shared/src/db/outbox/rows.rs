//! The outbox's constants and the rows the relay reads.

use chrono::{DateTime, Utc};
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
    /// The row id: the order of publication within a shard.
    pub id: i64,
    /// The event id (CloudEvents `id`).
    pub event_id: Uuid,
    /// The order, also the record key.
    pub order_id: Uuid,
    /// The order version the event announces.
    pub version: i64,
    /// `order.placed`, ...
    pub event_type: String,
    /// The topic without the prefix.
    pub topic: String,
    /// The Kafka record value: the JSON envelope as text.
    pub payload: String,
    /// Extra record headers (`traceparent`).
    pub headers: serde_json::Value,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
    /// Failed sends so far.
    pub attempts: i32,
    /// Parked: held back until replayed.
    pub parked: bool,
}

/// The columns of an [`OutboxRow`], in the order [`OutboxRow::from_columns`]
/// reads them (the claim selects them after the shard).
pub const ROW_COLUMNS: &str = "id, event_id, aggregate_id, aggregate_version, event_type, topic, \
     payload::text, headers, created_at, attempts, parked_at IS NOT NULL";

impl OutboxRow {
    /// The row from [`ROW_COLUMNS`] selected at `first` and after.
    pub fn from_columns(
        r: &tokio_postgres::Row,
        first: usize,
    ) -> Result<Self, tokio_postgres::Error> {
        Ok(OutboxRow {
            id: r.try_get(first)?,
            event_id: r.try_get(first + 1)?,
            order_id: r.try_get(first + 2)?,
            version: r.try_get(first + 3)?,
            event_type: r.try_get(first + 4)?,
            topic: r.try_get(first + 5)?,
            payload: r.try_get(first + 6)?,
            headers: r.try_get(first + 7)?,
            created_at: r.try_get(first + 8)?,
            attempts: r.try_get(first + 9)?,
            parked: r.try_get(first + 10)?,
        })
    }
}

/// A parked row, for `order-relay outbox parked`.
#[derive(Debug, Clone)]
pub struct ParkedRow {
    /// The row id.
    pub id: i64,
    /// The event id.
    pub event_id: Uuid,
    /// The order.
    pub order_id: Uuid,
    /// The order version.
    pub version: i64,
    /// The event type.
    pub event_type: String,
    /// Failed sends.
    pub attempts: i32,
    /// The last send error.
    pub last_error: Option<String>,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
}

/// Backlog figures for the gauges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxStats {
    /// Rows not yet published (parked ones included).
    pub backlog: i64,
    /// Age of the oldest row, in seconds.
    pub oldest_age_seconds: f64,
    /// Rows parked.
    pub parked: i64,
}
