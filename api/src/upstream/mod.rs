//! Clients of the other services: the product service (authoritative
//! prices) and the cart service (checkout from a cart). Both are optional:
//! without a product service the client's prices are trusted (development
//! only); without a cart service `cartId` is refused.

pub mod breaker;
pub mod carts;
pub mod http;
pub mod products;

pub use carts::{Cart, CartClient, CartItem};
pub use http::{Upstream, UpstreamError, UpstreamSettings};
pub use products::{Product, ProductClient};
