//! Shared core of the order service: domain rules, SQL, configuration,
//! telemetry and shutdown, used by both `order-api` and `order-relay`.

#![warn(missing_docs)]

pub mod asyncapi;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod listen;
pub mod probe;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod trace;

pub use error::StoreError;

#[cfg(feature = "testing")]
pub mod testing;
