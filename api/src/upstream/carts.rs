//! The cart service: checkout from the caller's cart.

use super::http::{Upstream, bad_status, bad_upstream, encode_segment};
use crate::problem::ApiError;
use order_shared::domain::FieldError;
use serde::Deserialize;

/// A line of a cart.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartItem {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price: i64,
}

/// A cart as the cart service returns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cart {
    pub items: Vec<CartItem>,
    #[serde(default)]
    pub currency: Option<String>,
}

/// Client of the cart service (`CART_SERVICE_URL`).
#[derive(Debug, Clone)]
pub struct CartClient {
    upstream: Upstream,
    base: Option<String>,
}

impl CartClient {
    /// A client of the service at `base`; none: checkout from a cart is refused.
    pub fn new(upstream: Upstream, base: Option<String>) -> Self {
        CartClient { upstream, base }
    }

    /// Reads the caller's cart, forwarding the caller's token.
    pub async fn cart(&self, cart_id: &str, bearer: &str) -> Result<Cart, ApiError> {
        let Some(base) = &self.base else {
            return Err(ApiError::bad_request(
                "Checkout from a cart is not configured (CART_SERVICE_URL is unset); send items.",
            ));
        };
        let url = format!("{base}/api/carts/{}", encode_segment(cart_id));
        let resp = self.upstream.get(&url, Some(bearer)).await?;
        match resp.status().as_u16() {
            200 => resp
                .json::<Cart>()
                .await
                .map_err(|e| bad_upstream("cart", &e)),
            403 | 404 => Err(ApiError::validation(vec![FieldError::new(
                "cartId",
                "no such cart for this user",
            )])),
            status => Err(bad_status("cart", status)),
        }
    }
}
