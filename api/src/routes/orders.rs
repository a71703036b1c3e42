//! `/api/orders`: create, list, read, history and the admin/user transitions.
//! Handlers translate HTTP into calls on `order_shared::db` and back.

use super::wire::{
    CancelRequest, CreateOrderRequest, HistoryItem, OrderBody, OrderPage, ShipRequest, Status,
};
use crate::auth::{BearerAuth, Caller};
use crate::catalog::Catalog;
use crate::problem::ApiError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use deadpool_postgres::Pool;
use order_shared::db::orders::{
    self, Change, CreateOrder, Created, IdempotencyKey, OrderQuery, Transition, TransitionOutcome,
};
use order_shared::domain::order::ItemInput;
use order_shared::domain::{FieldError, NewOrder, NewOrderInput};
use poem::Request;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;

#[derive(Tags)]
enum ApiTags {
    /// Orders and their lifecycle.
    Orders,
}

/// The orders resource.
#[derive(Debug, Clone)]
pub struct OrdersApi {
    pub pool: Pool,
    pub catalog: Catalog,
    pub shards: u32,
    pub idempotency_ttl: Duration,
    /// NOTIFY the relay with each outbox row (`OUTBOX_NOTIFY`).
    pub notify: bool,
}

#[derive(ApiResponse)]
pub enum CreateResponse {
    /// The order was placed (or, with a reused Idempotency-Key, placed before).
    #[oai(status = 201)]
    Created(
        Json<OrderBody>,
        #[oai(header = "Location")] String,
        /// `true` when this answer repeats an earlier request with the same Idempotency-Key.
        #[oai(header = "Idempotent-Replayed")]
        Option<String>,
    ),
}

const MAX_TEXT: usize = 100;
const MAX_REASON: usize = 500;
const MAX_IDEMPOTENCY_KEY: usize = 255;

fn traceparent(req: &Request) -> Option<String> {
    let value = req.headers().get("traceparent")?.to_str().ok()?;
    // version-traceid-spanid-flags; anything else is dropped, not forwarded.
    let parts: Vec<&str> = value.split('-').collect();
    let valid = parts.len() == 4
        && [2, 32, 16, 2]
            .iter()
            .zip(&parts)
            .all(|(len, p)| p.len() == *len && p.bytes().all(|b| b.is_ascii_hexdigit()));
    valid.then(|| value.to_owned())
}

fn bearer_token(req: &Request) -> &str {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(7..))
        .unwrap_or_default()
}

fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<Uuid, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ApiError::validation(vec![FieldError::new(
                "cursor",
                "is not a cursor returned by this API",
            )])
        })
}

fn text_field(name: &str, value: &str, errors: &mut Vec<FieldError>) -> String {
    let value = value.trim();
    let len = value.chars().count();
    if len == 0 || len > MAX_TEXT {
        errors.push(FieldError::new(
            name,
            format!("is required, 1 to {MAX_TEXT} characters"),
        ));
    }
    value.to_owned()
}

/// Puts the order id on the request's span, so every log line of the
/// request carries it.
fn tag_order(id: Uuid) {
    tracing::Span::current().record("order_id", tracing::field::display(id));
}

fn record_transition(
    from: order_shared::domain::OrderStatus,
    to: order_shared::domain::OrderStatus,
) {
    metrics::counter!("order_transitions_total", "from" => from.as_str(), "to" => to.as_str())
        .increment(1);
}

impl OrdersApi {
    /// Turns the request into a validated order (items or cart, then prices).
    async fn new_order(
        &self,
        req: &Request,
        body: CreateOrderRequest,
    ) -> Result<NewOrder, ApiError> {
        let (items, cart_currency) = match (body.items, body.cart_id) {
            (Some(_), Some(_)) => {
                return Err(ApiError::validation(vec![FieldError::new(
                    "cartId",
                    "give either items or cartId, not both",
                )]));
            }
            (Some(items), None) => (items.into_iter().map(ItemInput::from).collect(), None),
            (None, Some(cart_id)) => {
                let cart = self.catalog.cart(&cart_id, bearer_token(req)).await?;
                let items = cart
                    .items
                    .into_iter()
                    .map(|i| ItemInput {
                        product_id: i.product_id,
                        quantity: i.quantity,
                        unit_price: i.unit_price,
                    })
                    .collect();
                (items, cart.currency)
            }
            (None, None) => (Vec::new(), None),
        };
        let currency = body.currency.or(cart_currency).unwrap_or_default();
        let input = NewOrderInput {
            currency,
            items,
            shipping_address: body.shipping_address.unwrap_or_default().into(),
        };
        let order = NewOrder::parse(input.clone()).map_err(ApiError::validation)?;
        self.catalog
            .check_prices(order.currency.as_str(), &input.items)
            .await?;
        Ok(order)
    }

    async fn transition(
        &self,
        req: &Request,
        caller: &Caller,
        id: Uuid,
        change: Change,
    ) -> Result<Json<OrderBody>, ApiError> {
        tag_order(id);
        let actor = caller.actor();
        let traceparent = traceparent(req);
        let transition = Transition {
            order_id: id,
            change,
            owner: (!caller.is_admin).then_some(caller.user_id.as_str()),
            actor: &actor,
            traceparent: traceparent.as_deref(),
            shards: self.shards,
            notify: self.notify,
        };
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let outcome = orders::transition_order(&tx, &transition).await?;
        tx.commit().await?;
        let order = match outcome {
            TransitionOutcome::Applied { order, from } => {
                record_transition(from, order.status);
                tracing::info!(order_id = %order.id, from = %from, to = %order.status,
                    version = order.version, actor = %actor, "Order status changed.");
                order
            }
            TransitionOutcome::Unchanged(order) => order,
        };
        Ok(Json(order.into()))
    }
}

#[OpenApi(prefix_path = "/orders", tag = "ApiTags::Orders")]
impl OrdersApi {
    /// Place an order
    ///
    /// Writes the order, its items, the first history row and the
    /// `order.placed` outbox event in one transaction. With an
    /// `Idempotency-Key`, repeating the same request returns the first order.
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        auth: BearerAuth,
        req: &Request,
        /// Makes retries safe: the same key and body return the first order (keys expire after 24 h by default).
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: Json<CreateOrderRequest>,
    ) -> Result<CreateResponse, ApiError> {
        let caller = auth.0;
        if let Some(key) = idempotency_key.0.as_deref()
            && (key.is_empty()
                || key.len() > MAX_IDEMPOTENCY_KEY
                || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ApiError::validation(vec![FieldError::new(
                "Idempotency-Key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
            )]));
        }
        let order = self.new_order(req, body.0).await?;
        let idempotency = idempotency_key.0.as_deref().map(|key| {
            let canonical = serde_json::to_vec(&order).unwrap_or_default();
            IdempotencyKey {
                key,
                request_hash: Sha256::digest(&canonical).into(),
                expires_at: chrono::Utc::now()
                    + chrono::Duration::from_std(self.idempotency_ttl)
                        .unwrap_or(chrono::Duration::hours(24)),
            }
        });
        let actor = caller.actor();
        let traceparent = traceparent(req);
        let create = CreateOrder {
            user_id: &caller.user_id,
            order: &order,
            actor: &actor,
            idempotency,
            traceparent: traceparent.as_deref(),
            shards: self.shards,
            notify: self.notify,
        };
        let client = self.pool.get().await?;
        let (order, replayed) = match orders::create_order(&client, &create).await? {
            Created::New(order) => {
                tag_order(order.id);
                metrics::counter!("orders_created_total").increment(1);
                tracing::info!(order_id = %order.id, user_id = %order.user_id,
                    total_amount = order.total_amount, currency = %order.currency, "Order placed.");
                (order, None)
            }
            Created::Replayed(order) => (order, Some("true".to_owned())),
        };
        let location = format!("/api/orders/{}", order.id);
        Ok(CreateResponse::Created(
            Json(order.into()),
            location,
            replayed,
        ))
    }

    /// List orders
    ///
    /// Newest first. Users see their own orders; admins see all, or one
    /// user's with `userId`.
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        auth: BearerAuth,
        /// Only orders in this status.
        status: Query<Option<Status>>,
        /// Page size, 1..100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i64>>,
        /// `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Admins: only this user's orders. Users: must be their own id.
        #[oai(name = "userId")]
        user_id: Query<Option<String>>,
    ) -> Result<Json<OrderPage>, ApiError> {
        let caller = auth.0;
        let user_filter = match (caller.is_admin, user_id.0) {
            (true, filter) => filter,
            (false, Some(other)) if other != caller.user_id => {
                return Err(ApiError::forbidden("Users may list only their own orders."));
            }
            (false, _) => Some(caller.user_id.clone()),
        };
        let before = cursor
            .0
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(decode_cursor)
            .transpose()?;
        let query = OrderQuery {
            user_id: user_filter.as_deref(),
            status: status.0.map(Into::into),
            before,
            limit: limit.0.unwrap_or(20),
        };
        let client = self.pool.get().await?;
        let page = orders::list_orders(&client, &query).await?;
        Ok(Json(OrderPage {
            items: page.orders.into_iter().map(OrderBody::from).collect(),
            next_cursor: page.next_before.map(encode_cursor),
        }))
    }

    /// Get an order
    #[oai(path = "/:id", method = "get")]
    async fn get(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<OrderBody>, ApiError> {
        tag_order(id.0);
        let client = self.pool.get().await?;
        let order = orders::get_order(&client, id.0).await?;
        if !auth.0.is_admin && order.user_id != auth.0.user_id {
            return Err(ApiError::not_found());
        }
        Ok(Json(order.into()))
    }

    /// Status history of an order
    ///
    /// Oldest first, from placement on.
    #[oai(path = "/:id/history", method = "get")]
    async fn history(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Json<Vec<HistoryItem>>, ApiError> {
        tag_order(id.0);
        let client = self.pool.get().await?;
        let order = orders::get_order(&client, id.0).await?;
        if !auth.0.is_admin && order.user_id != auth.0.user_id {
            return Err(ApiError::not_found());
        }
        let history = orders::order_history(&client, id.0).await?;
        Ok(Json(history.into_iter().map(HistoryItem::from).collect()))
    }

    /// Cancel an order
    ///
    /// Owner or admin; allowed while PENDING or CONFIRMED. Cancelling a
    /// cancelled order is a no-op.
    #[oai(path = "/:id/cancel", method = "patch")]
    async fn cancel(
        &self,
        auth: BearerAuth,
        req: &Request,
        id: Path<Uuid>,
        body: Json<Option<CancelRequest>>,
    ) -> Result<Json<OrderBody>, ApiError> {
        let reason = body
            .0
            .unwrap_or_default()
            .reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON)
        {
            return Err(ApiError::validation(vec![FieldError::new(
                "reason",
                format!("must be at most {MAX_REASON} characters"),
            )]));
        }
        self.transition(req, &auth.0, id.0, Change::Cancel { reason })
            .await
    }

    /// Ship an order (admin)
    ///
    /// CONFIRMED -> SHIPPED with carrier and tracking number.
    #[oai(path = "/:id/ship", method = "patch")]
    async fn ship(
        &self,
        auth: BearerAuth,
        req: &Request,
        id: Path<Uuid>,
        body: Json<ShipRequest>,
    ) -> Result<Json<OrderBody>, ApiError> {
        auth.0.require_admin()?;
        let mut errors = Vec::new();
        let carrier = text_field("carrier", &body.0.carrier, &mut errors);
        let tracking_number = text_field("trackingNumber", &body.0.tracking_number, &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let change = Change::Ship {
            carrier,
            tracking_number,
        };
        self.transition(req, &auth.0, id.0, change).await
    }

    /// Mark an order delivered (admin)
    ///
    /// SHIPPED -> DELIVERED.
    #[oai(path = "/:id/deliver", method = "patch")]
    async fn deliver(
        &self,
        auth: BearerAuth,
        req: &Request,
        id: Path<Uuid>,
    ) -> Result<Json<OrderBody>, ApiError> {
        auth.0.require_admin()?;
        self.transition(req, &auth.0, id.0, Change::Deliver).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        assert!(decode_cursor("not a cursor").is_err());
        assert!(decode_cursor("AAAA").is_err());
    }

    #[test]
    fn traceparent_must_be_well_formed() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let req = Request::builder().header("traceparent", good).finish();
        assert_eq!(traceparent(&req).as_deref(), Some(good));
        let bad = Request::builder()
            .header("traceparent", "00-xyz-01")
            .finish();
        assert_eq!(traceparent(&bad), None);
    }
}
