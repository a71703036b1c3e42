//! `/api/orders`: create, list, read, history and the admin/user transitions.
//! Handlers translate HTTP into calls on `order_shared::db` and back; the
//! request parsing is in `input`, a status change in `change`.

mod change;
mod input;

use crate::auth::{BearerAuth, Caller};
use crate::http::traceparent;
use crate::limits::OrderRateLimit;
use crate::live::{Announcer, Hub};
use crate::problem::ApiError;
use crate::routes::json_body::JsonBody;
use crate::routes::lenient::{Lenient, LenientJson, OrNull};
use crate::routes::pattern::{Cursor, IdempotencyKey, Patterned, UserIdFilter};
use crate::routes::wire::{
    CancelRequest, CreateOrderBody, CreateOrderRequest, HistoryItem, OrderBody, OrderPageBody,
    ShipRequest, Status,
};
use crate::upstream::{CartClient, ProductClient};
use deadpool_postgres::Pool;
use input::bearer_token;
use order_shared::db::Emit;
use order_shared::db::orders::{self, CreateOrder, Created, OrderQuery};
use order_shared::domain::{Change, IfMatch, Order, OrderId, UserId, entity_tag};
use order_shared::trace::TraceParent;
use poem::Request;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

#[derive(Tags)]
pub(crate) enum ApiTags {
    /// Orders and their lifecycle.
    Orders,
}

/// The orders resource.
#[derive(Debug, Clone)]
pub struct OrdersApi {
    /// This replica's live-update fan-out: changes made here go out at once.
    pub hub: Arc<Hub>,
    /// Tells the other replicas about changes made here.
    pub announcer: Announcer,
    pub pool: Pool,
    pub products: ProductClient,
    pub carts: CartClient,
    pub shards: u32,
    pub idempotency_ttl: Duration,
    /// NOTIFY the relay with each outbox row (`OUTBOX_NOTIFY`).
    pub notify: bool,
    /// `RATE_LIMIT_ORDERS_PER_MINUTE`, when set.
    pub rate_limit: Option<Arc<OrderRateLimit>>,
}

#[derive(ApiResponse)]
pub enum CreateResponse {
    /// The order was placed (or, with a reused Idempotency-Key, placed before).
    #[oai(status = 201)]
    Created(
        JsonBody<OrderBody>,
        #[oai(header = "Location")] String,
        /// `true` when this answer repeats an earlier request with the same Idempotency-Key.
        #[oai(header = "Idempotent-Replayed")]
        Option<String>,
        /// The order's version as an entity tag (`"1"`): send it as `If-Match` with a change.
        #[oai(header = "ETag")]
        String,
    ),
}

/// One order, with its version as the entity tag.
#[derive(ApiResponse)]
pub enum OrderResponse {
    /// The order.
    #[oai(status = 200)]
    Ok(
        JsonBody<OrderBody>,
        /// The order's version as an entity tag (`"3"`): send it as `If-Match` with a change.
        #[oai(header = "ETag")]
        String,
    ),
}

impl OrderResponse {
    fn of(order: Order) -> Self {
        let tag = entity_tag(order.version);
        OrderResponse::Ok(JsonBody(order.into()), tag)
    }
}

/// Puts the order id on the request's log context, so every later line
/// of the request carries it.
fn tag_order(id: OrderId) {
    order_shared::telemetry::tag_order(*id.as_uuid());
}

impl OrdersApi {
    /// How this replica writes outbox rows for a request.
    fn emit<'a>(&self, traceparent: Option<&'a TraceParent>) -> Emit<'a> {
        Emit {
            traceparent,
            shards: self.shards,
            notify: self.notify,
        }
    }

    async fn change(
        &self,
        req: &Request,
        caller: &Caller,
        id: OrderId,
        change: Change,
        if_match: &Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        tag_order(id);
        let if_match = if_match.0.as_deref().map(IfMatch::parse);
        let traceparent = traceparent(req);
        let emit = self.emit(traceparent.as_ref());
        let order = change::apply(&self.pool, &emit, caller, id, change, if_match.as_ref()).await?;
        self.hub.publish(&order);
        self.announcer
            .announce(order.id, order.version, order.user_id.as_str());
        Ok(OrderResponse::of(order))
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
        idempotency_key: Header<Option<Patterned<IdempotencyKey>>>,
        body: LenientJson<CreateOrderRequest, CreateOrderBody>,
    ) -> Result<CreateResponse, ApiError> {
        let caller = auth.0;
        if let Some(limit) = &self.rate_limit {
            limit.check(&caller.user_id)?;
        }
        let key = idempotency_key.0.as_ref().map(Patterned::as_str);
        let sent = req.headers().contains_key("idempotency-key");
        input::check_idempotency_key(sent, key)?;
        let order =
            input::new_order(&self.products, &self.carts, bearer_token(req), body.0).await?;
        let idempotency = key
            .map(|key| input::idempotency_key(key, &order, self.idempotency_ttl))
            .transpose()?;
        let actor = caller.actor();
        let traceparent = traceparent(req);
        let create = CreateOrder {
            user_id: &caller.user_id,
            order: &order,
            actor: &actor,
            idempotency,
            emit: self.emit(traceparent.as_ref()),
        };
        let client = self.pool.get().await?;
        let (order, replayed) = match orders::create_order(&client, &create).await? {
            Created::New(order) => {
                tag_order(order.id);
                self.hub.publish(&order);
                self.announcer
                    .announce(order.id, order.version, order.user_id.as_str());
                metrics::counter!("orders_created_total").increment(1);
                tracing::info!(order_id = %order.id, user_id = %order.user_id,
                    total_amount = order.total_amount, currency = %order.currency, "Order placed.");
                (order, None)
            }
            Created::Replayed(order) => (order, Some("true".to_owned())),
        };
        let location = format!("/api/orders/{}", order.id);
        let tag = entity_tag(order.version);
        Ok(CreateResponse::Created(
            JsonBody(order.into()),
            location,
            replayed,
            tag,
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
        cursor: Query<Option<Patterned<Cursor>>>,
        /// Admins: only this user's orders. Users: must be their own id.
        #[oai(name = "userId")]
        user_id: Query<Option<Patterned<UserIdFilter>>>,
    ) -> Result<JsonBody<OrderPageBody>, ApiError> {
        let caller = auth.0;
        let user_id = user_id.0.map(|u| UserId::new(u.into_string()));
        let user_filter = match (caller.is_admin, user_id) {
            (true, filter) => filter,
            (false, Some(other)) if other != caller.user_id => {
                return Err(ApiError::forbidden("Users may list only their own orders."));
            }
            (false, _) => Some(caller.user_id.clone()),
        };
        let before = cursor
            .0
            .as_ref()
            .map(Patterned::as_str)
            .filter(|c| !c.is_empty())
            .map(input::decode_cursor)
            .transpose()?;
        let query = OrderQuery {
            user_id: user_filter.as_ref(),
            status: status.0.map(Into::into),
            before,
            limit: limit.0.unwrap_or(20),
        };
        let client = self.pool.get().await?;
        let page = orders::list_orders(&client, &query).await?;
        Ok(JsonBody(OrderPageBody {
            items: page.orders.into_iter().map(OrderBody::from).collect(),
            next_cursor: page.next_before.map(input::encode_cursor),
        }))
    }

    /// Get an order
    #[oai(path = "/:id", method = "get")]
    async fn get(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<OrderResponse, ApiError> {
        let id = OrderId::from(id.0);
        tag_order(id);
        let client = self.pool.get().await?;
        let order = orders::get_order(&client, id, auth.0.owner()).await?;
        Ok(OrderResponse::of(order))
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
        let id = OrderId::from(id.0);
        tag_order(id);
        let client = self.pool.get().await?;
        let history = orders::order_history(&client, id, auth.0.owner()).await?;
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
        /// Apply the change only if the order is still at this version: its `ETag`, e.g. `"3"`, or a list of them, or `*`. Otherwise 412 (a value that is not a list of entity tags matches no version).
        #[oai(name = "If-Match", validator(max_length = 1024))]
        if_match: Header<Option<String>>,
        body: Json<OrNull<Lenient<CancelRequest>>>,
    ) -> Result<OrderResponse, ApiError> {
        let reason = input::cancel_reason(body.0.0.map(|b| b.0).unwrap_or_default().reason)?;
        self.change(
            req,
            &auth.0,
            id.0.into(),
            Change::Cancel { reason },
            &if_match,
        )
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
        /// Apply the change only if the order is still at this version: its `ETag`, e.g. `"3"`, or a list of them, or `*`. Otherwise 412 (a value that is not a list of entity tags matches no version).
        #[oai(name = "If-Match", validator(max_length = 1024))]
        if_match: Header<Option<String>>,
        body: Json<Lenient<ShipRequest>>,
    ) -> Result<OrderResponse, ApiError> {
        auth.0.require_admin()?;
        let mut errors = Vec::new();
        let body = body.0.0;
        let carrier = input::text_field("carrier", &body.carrier, &mut errors);
        let tracking_number =
            input::text_field("trackingNumber", &body.tracking_number, &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let change = Change::Ship {
            carrier,
            tracking_number,
        };
        self.change(req, &auth.0, id.0.into(), change, &if_match)
            .await
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
        /// Apply the change only if the order is still at this version: its `ETag`, e.g. `"3"`, or a list of them, or `*`. Otherwise 412 (a value that is not a list of entity tags matches no version).
        #[oai(name = "If-Match", validator(max_length = 1024))]
        if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        auth.0.require_admin()?;
        self.change(req, &auth.0, id.0.into(), Change::Deliver, &if_match)
            .await
    }
}
