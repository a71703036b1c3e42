//! Integration tests of order-relay against a real PostgreSQL and a real
//! Kafka-API broker (Tansu): one binary, one module per area.

mod backlog;
mod batches;
mod consume;
mod consume_records;
mod consumer_faults;
mod consumer_locks;
mod dead_letters;
mod deletes;
mod helpers;
mod inbound;
mod lease_faults;
mod live;
mod logged;
mod outage;
mod plans;
mod publish;
mod replicas;
mod snapshots;
