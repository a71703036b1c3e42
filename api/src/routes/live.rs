//! `GET /api/orders/{id}/events` and `GET /api/orders/events`: live order
//! updates as Server-Sent Events. Each change is one message `event: order`,
//! `id: <orderId>:<version>`, `data:` the order as `GET /api/orders/{id}`
//! returns it; a comment line every `SSE_HEARTBEAT_MS`; streams end when
//! the server shuts down, so a rollout is not held up by them.

use crate::auth::BearerAuth;
use crate::live::{Hub, LiveSettings, Subscription, Watch};
use crate::problem::ApiError;
use crate::routes::orders::ApiTags;
use crate::routes::pattern::{Patterned, UserIdFilter};
use crate::routes::wire::OrderBody;
use deadpool_postgres::Pool;
use futures_util::stream::{self, BoxStream, StreamExt};
use order_shared::db::orders::get_order;
use order_shared::domain::{Order, OrderId, UserId};
use poem::web::sse::Event;
use poem_openapi::OpenApi;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::EventStream;
use poem_openapi::types::ToJSON;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The live-update routes.
#[derive(Debug, Clone)]
pub struct LiveApi {
    pub pool: Pool,
    pub hub: Arc<Hub>,
    pub settings: LiveSettings,
    /// Fires at shutdown: every open stream ends.
    pub shutdown: CancellationToken,
}

type Updates = EventStream<BoxStream<'static, OrderBody>>;

/// The version a `Last-Event-ID` of order `id` names, if it names one.
fn last_version(id: OrderId, last_event_id: Option<&str>) -> Option<i64> {
    let (order, version) = last_event_id?.trim().split_once(':')?;
    (order.parse::<OrderId>().ok()? == id).then_some(())?;
    version.parse().ok()
}

impl LiveApi {
    fn subscribe(&self, caller: &UserId, watch: Watch) -> Result<Subscription, ApiError> {
        self.hub.subscribe(caller, watch).map_err(|_| {
            metrics::counter!("sse_streams_refused_total").increment(1);
            ApiError::too_many_streams(self.settings.max_streams_per_user)
        })
    }

    /// `first` (the state on connect), then every update fanned out to
    /// `sub` (for one order: only versions above `floor`), until the client
    /// goes or the server stops. List streams have no floor: the hub sends
    /// each version of an order once.
    fn stream(&self, sub: Subscription, first: Option<Order>, floor: Option<i64>) -> Updates {
        let shutdown = self.shutdown.clone();
        let first = stream::iter(first.map(OrderBody::from));
        let rest = stream::unfold((sub, floor), move |(mut sub, mut floor)| {
            let shutdown = shutdown.clone();
            async move {
                loop {
                    let order = tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        order = sub.updates.recv() => order?,
                    };
                    if floor.is_none_or(|f| order.version > f) {
                        floor = floor.map(|_| order.version);
                        return Some((OrderBody::from((*order).clone()), (sub, floor)));
                    }
                }
            }
        });
        EventStream::new(first.chain(rest).boxed())
            .keep_alive(self.settings.heartbeat)
            .to_event(|order| {
                Event::message(order.to_json_string())
                    .id(format!("{}:{}", order.id, order.version))
                    .event_type("order")
            })
    }
}

#[OpenApi(prefix_path = "/orders", tag = "ApiTags::Orders")]
impl LiveApi {
    /// Live updates of one order (Server-Sent Events)
    ///
    /// Owner or admin. Sends the order's current state first (unless
    /// `Last-Event-ID` names it already), then one `order` message per
    /// change, and a comment every 15 s. A user may hold
    /// `SSE_MAX_STREAMS_PER_USER` streams (default 5) per replica; more is 429.
    #[oai(path = "/:id/events", method = "get")]
    async fn order_events(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        /// The `id` of the last message received (`<orderId>:<version>`): on reconnect, the current state is sent only if it is newer.
        #[oai(name = "Last-Event-ID", validator(max_length = 200))]
        last_event_id: Header<Option<String>>,
    ) -> Result<Updates, ApiError> {
        let caller = auth.0;
        let id = OrderId::from(id.0);
        // Subscribe before reading, so no change falls between the two.
        let sub = self.subscribe(&caller.user_id, Watch::Order(id))?;
        let client = self.pool.get().await?;
        let order = get_order(&client, id, caller.owner()).await?;
        drop(client);
        let seen = last_version(id, last_event_id.0.as_deref()).unwrap_or(0);
        let floor = seen.max(order.version);
        let first = (order.version > seen).then_some(order);
        Ok(self.stream(sub, first, Some(floor)))
    }

    /// Live updates of the caller's orders (Server-Sent Events)
    ///
    /// One `order` message per change of any of the caller's orders (admins:
    /// every order, or one user's with `userId`). No initial state:
    /// `Last-Event-ID` is ignored; list the orders to catch up.
    #[oai(path = "/events", method = "get")]
    async fn list_events(
        &self,
        auth: BearerAuth,
        /// Admins: only this user's orders. Users: must be their own id.
        #[oai(name = "userId")]
        user_id: Query<Option<Patterned<UserIdFilter>>>,
    ) -> Result<Updates, ApiError> {
        let caller = auth.0;
        let user_id = user_id.0.map(|u| UserId::new(u.into_string()));
        let watch = match (caller.is_admin, user_id) {
            (true, Some(user)) => Watch::User(user),
            (true, None) => Watch::All,
            (false, Some(other)) if other != caller.user_id => {
                return Err(ApiError::forbidden(
                    "Users may watch only their own orders.",
                ));
            }
            (false, _) => Watch::User(caller.user_id.clone()),
        };
        let sub = self.subscribe(&caller.user_id, watch)?;
        Ok(self.stream(sub, None, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_counts_only_for_its_order() {
        let id: OrderId = "0190a6f0-0000-7000-8000-000000000001".parse().unwrap();
        assert_eq!(
            last_version(id, Some("0190a6f0-0000-7000-8000-000000000001:4")),
            Some(4)
        );
        assert_eq!(
            last_version(id, Some(" 0190a6f0-0000-7000-8000-000000000001:4 ")),
            Some(4)
        );
        assert_eq!(
            last_version(id, Some("0190a6f0-0000-7000-8000-000000000002:4")),
            None
        );
        assert_eq!(last_version(id, Some("4")), None);
        assert_eq!(
            last_version(id, Some("0190a6f0-0000-7000-8000-000000000001:x")),
            None
        );
        assert_eq!(last_version(id, None), None);
    }
}
