//! `order-api`: the REST API of the order service. Every change writes the
//! order rows and an outbox row in one database transaction.

pub mod auth;
pub mod config;
pub mod conn;
pub mod http;
pub mod limits;
pub mod live;
pub mod problem;
pub mod routes;
pub mod startup;
pub mod upstream;

pub use config::ApiSettings;
pub use startup::Application;
