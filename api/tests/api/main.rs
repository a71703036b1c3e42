//! Integration tests of order-api against a real PostgreSQL: one binary,
//! one module per area, a fresh database per test.

mod auth;
mod create;
mod hardening;
mod helpers;
mod idempotency;
mod live;
mod live_faults;
mod live_interest;
mod ops;
mod outage;
mod preconditions;
mod read;
mod services;
mod slow_clients;
mod tokens;
mod transitions;
mod upstream;
