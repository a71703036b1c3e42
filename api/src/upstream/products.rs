//! The product service: the authoritative prices. Without it the client's
//! prices are trusted (development only).

use super::http::{Upstream, bad_status, bad_upstream, encode_segment};
use crate::problem::ApiError;
use order_shared::domain::FieldError;
use order_shared::domain::ItemInput;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A product as the product service describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: String,
    pub price: i64,
    pub currency: String,
    pub active: bool,
}

/// Client of the product service (`PRODUCT_SERVICE_URL`).
#[derive(Debug, Clone)]
pub struct ProductClient {
    upstream: Upstream,
    base: Option<String>,
    /// Lookups in flight per request (`UPSTREAM_MAX_CONCURRENCY`).
    max_concurrency: usize,
}

impl ProductClient {
    /// A client of the service at `base`; none: prices are not checked.
    pub fn new(upstream: Upstream, base: Option<String>, max_concurrency: usize) -> Self {
        ProductClient {
            upstream,
            base,
            max_concurrency: max_concurrency.max(1),
        }
    }

    /// Whether prices are checked at all.
    pub fn checks_prices(&self) -> bool {
        self.base.is_some()
    }

    /// Checks every line against the product service: known, active, same
    /// price and currency. Lines are checked concurrently, at most
    /// `max_concurrency` at a time.
    pub async fn check_prices(&self, currency: &str, items: &[ItemInput]) -> Result<(), ApiError> {
        let Some(base) = &self.base else {
            return Ok(());
        };
        let permits = Arc::new(Semaphore::new(self.max_concurrency));
        let mut lookups = tokio::task::JoinSet::new();
        for (i, item) in items.iter().enumerate() {
            let upstream = self.upstream.clone();
            let permits = permits.clone();
            let url = format!("{base}/api/products/{}", encode_segment(&item.product_id));
            lookups.spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .map_err(|e| ApiError::internal_from(&e))?;
                let resp = upstream.get(&url, None).await?;
                let found = match resp.status().as_u16() {
                    404 => None,
                    200 => Some(
                        resp.json::<Product>()
                            .await
                            .map_err(|e| bad_upstream("product", &e))?,
                    ),
                    status => return Err(bad_status("product", status)),
                };
                Ok::<_, ApiError>((i, found))
            });
        }
        let mut errors = Vec::new();
        while let Some(joined) = lookups.join_next().await {
            let (i, found) = joined.map_err(|e| ApiError::internal_from(&e))??;
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
