//! `order-relay`: publishes the outbox to Kafka in order per order, without
//! loss, with several replicas at once (shards leased through PostgreSQL),
//! and applies payment and inventory events once per idempotency key.

pub mod ack_clock;
pub mod backoff;
pub mod config;
pub mod consumer;
pub mod context;
mod contract;
pub mod dlq;
pub mod flags;
pub mod flights;
pub mod handoff;
pub mod health;
pub mod kafka;
pub mod kafka_log;
pub mod leases;
pub mod outlets;
pub mod producer;
pub mod producers;
pub mod publisher;
pub mod shard;
pub mod snapshot;
pub mod startup;
pub mod workers;

pub use config::RelaySettings;
pub use context::RelayContext;
pub use startup::Relay;
