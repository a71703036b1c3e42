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
