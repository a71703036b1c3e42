//! Integration tests of order-relay against a real PostgreSQL and a real
//! Kafka-API broker (Tansu): one binary, one module per area.

mod consume;
mod helpers;
mod outage;
mod publish;
mod replicas;
