//! HTTP routes: the OpenAPI-described orders resource, health and metrics.

pub mod health;
pub mod json_body;
#[cfg(test)]
mod json_parity;
pub mod lenient;
pub mod live;
pub mod orders;
pub mod wire;
