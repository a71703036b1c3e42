//! Clients of the product service (authoritative prices) and the cart
//! service (checkout from a cart). Both are optional: without a product
//! service the client's prices are trusted (development only).

use crate::problem::ApiError;
use order_shared::domain::FieldError;
use order_shared::domain::order::ItemInput;
use serde::Deserialize;
use std::time::Duration;

/// A product as the product service describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: String,
    pub price: i64,
    pub currency: String,
    pub active: bool,
}

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

/// HTTP clients of the other services.
#[derive(Debug, Clone)]
pub struct Catalog {
    http: reqwest::Client,
    product_url: Option<String>,
    cart_url: Option<String>,
}

impl Catalog {
    pub fn new(product_url: Option<String>, cart_url: Option<String>, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        Catalog {
            http,
            product_url,
            cart_url,
        }
    }

    pub fn checks_prices(&self) -> bool {
        self.product_url.is_some()
    }

    /// Reads the caller's cart, forwarding the caller's token.
    pub async fn cart(&self, cart_id: &str, bearer: &str) -> Result<Cart, ApiError> {
        let Some(base) = &self.cart_url else {
            return Err(ApiError::bad_request(
                "Checkout from a cart is not configured (CART_SERVICE_URL is unset); send items.",
            ));
        };
        let url = format!("{base}/api/carts/{}", encode_segment(cart_id));
        let resp = self
            .http
            .get(&url)
            .bearer_auth(bearer)
            .send()
            .await
            .map_err(|e| unreachable_service("cart", &e))?;
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

    /// Checks every line against the product service: known, active, same
    /// price and currency. Lines are checked concurrently.
    pub async fn check_prices(&self, currency: &str, items: &[ItemInput]) -> Result<(), ApiError> {
        let Some(base) = &self.product_url else {
            return Ok(());
        };
        let mut lookups = tokio::task::JoinSet::new();
        for (i, item) in items.iter().enumerate() {
            let http = self.http.clone();
            let url = format!("{base}/api/products/{}", encode_segment(&item.product_id));
            lookups.spawn(async move {
                let resp = http.get(&url).send().await?;
                let found = match resp.status().as_u16() {
                    404 => None,
                    _ => Some(resp.error_for_status()?.json::<Product>().await?),
                };
                Ok::<_, reqwest::Error>((i, found))
            });
        }
        let mut errors = Vec::new();
        while let Some(joined) = lookups.join_next().await {
            let (i, found) = joined
                .map_err(|e| ApiError::internal_from(&e))?
                .map_err(|e| unreachable_service("product", &e))?;
            let item = &items[i];
            let field = format!("items[{i}].productId");
            match found {
                None => errors.push(FieldError::new(field, "unknown product")),
                Some(p) if !p.active => {
                    errors.push(FieldError::new(field, "product is not on sale"))
                }
                Some(p) if p.price != item.unit_price || p.currency != currency => {
                    errors.push(FieldError::new(
                        format!("items[{i}].unitPrice"),
                        format!("price changed: now {} {}", p.price, p.currency),
                    ))
                }
                Some(_) => {}
            }
        }
        errors.sort_by(|a, b| a.field.cmp(&b.field));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(errors))
        }
    }
}

/// Percent-encodes a path segment (ids are client input).
fn encode_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unreachable_service(name: &str, err: &reqwest::Error) -> ApiError {
    tracing::warn!(service = name, error = %err, "Dependency call failed.");
    ApiError::unavailable(format!("The {name} service is unavailable; retry later."))
}

fn bad_upstream(name: &str, err: &reqwest::Error) -> ApiError {
    tracing::error!(service = name, error = %err, "Dependency answered with an unreadable body.");
    ApiError::unavailable(format!(
        "The {name} service answered unexpectedly; retry later."
    ))
}

fn bad_status(name: &str, status: u16) -> ApiError {
    tracing::warn!(
        service = name,
        status,
        "Dependency answered with an error status."
    );
    ApiError::unavailable(format!("The {name} service is unavailable; retry later."))
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("sku-1"), "sku-1");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
