//! Placing an order: order, items, first history row, outbox row and
//! idempotency key in one statement.

use super::read::get_order;
use crate::StoreError;
use crate::db::Emit;
use crate::db::GenericClient;
use crate::db::outbox::CHANNEL;
use crate::domain::events::outbox_event;
use crate::domain::{NewOrder, Order, OrderId, UserId};
use chrono::{DateTime, SubsecRound, Utc};
use tokio_postgres::types::Json;

/// An Idempotency-Key presented with a create request.
#[derive(Debug, Clone)]
pub struct IdempotencyKey<'a> {
    /// The key as the client sent it.
    pub key: &'a str,
    /// SHA-256 of the canonical request, to tell "same request" from "other body".
    pub request_hash: [u8; 32],
    /// When the key may be used for another request.
    pub expires_at: DateTime<Utc>,
}

/// Everything needed to insert a new order and its `order.placed` event.
#[derive(Debug, Clone)]
pub struct CreateOrder<'a> {
    /// Who places it.
    pub user_id: &'a UserId,
    /// The validated order.
    pub order: &'a NewOrder,
    /// Who asks, for the history.
    pub actor: &'a str,
    /// The request's Idempotency-Key, if any.
    pub idempotency: Option<IdempotencyKey<'a>>,
    /// How the outbox row is written.
    pub emit: Emit<'a>,
}

/// Whether a create inserted a new order or replayed an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new order.
    New(Order),
    /// The order an earlier request with the same key created.
    Replayed(Order),
}

/// Order, items, first history row, outbox row and idempotency key in ONE
/// statement: one round trip, atomic without an explicit transaction. When
/// the key is taken (and not expired) nothing is inserted and 0 is returned.
const INSERT_ORDER: &str = "\
WITH ik AS (
    INSERT INTO idempotency_keys (user_id, key, request_hash, order_id, expires_at)
    SELECT $2, $12, $13, $1, $14 WHERE $12::text IS NOT NULL
    ON CONFLICT (user_id, key) DO UPDATE
        SET request_hash = EXCLUDED.request_hash, order_id = EXCLUDED.order_id,
            created_at = now(), expires_at = EXCLUDED.expires_at
        WHERE idempotency_keys.expires_at <= now()
    RETURNING 1
), go AS (
    SELECT 1 WHERE $12::text IS NULL OR EXISTS (SELECT 1 FROM ik)
), o AS (
    INSERT INTO orders (id, user_id, status, currency, total_amount, version,
                        shipping_address, created_at, updated_at)
    SELECT $1, $2, 'PENDING', $3, $4, 1, $5, $6, $6 FROM go
    RETURNING id
), i AS (
    INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price, line_total)
    SELECT o.id, t.n::int, t.product_id, t.quantity, t.unit_price, t.line_total
    FROM o, unnest($7::text[], $8::int4[], $9::int8[], $10::int8[])
        WITH ORDINALITY AS t(product_id, quantity, unit_price, line_total, n)
), h AS (
    INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, created_at)
    SELECT o.id, NULL, 'PENDING', $21, $11, $6 FROM o
), ob AS (
    INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic,
                        payload, headers, shard)
    SELECT $15, o.id, 1, $16, $16, $17, $18, $19 FROM o
), n AS (
    SELECT pg_notify($22, $19::int4::text) FROM o WHERE $20
)
SELECT count(*), (SELECT count(*) FROM n) FROM o";

/// Inserts a new order with its `order.placed` outbox row, or, when the same
/// user already used the Idempotency-Key, returns the order created then.
#[tracing::instrument(level = "debug", skip_all, fields(user_id = %req.user_id))]
pub async fn create_order(
    client: &impl GenericClient,
    req: &CreateOrder<'_>,
) -> Result<Created, StoreError> {
    // A key can expire between our conflict and our read: try twice.
    for _ in 0..2 {
        // PostgreSQL keeps microseconds: round now so the answer equals a later read.
        let now = Utc::now().trunc_subsecs(6);
        let placed = crate::domain::Order::place(
            OrderId::generate(),
            req.user_id.clone(),
            req.order,
            req.actor,
            now,
        );
        let order = &placed.order;
        let event = outbox_event(order, &placed.event, req.emit.traceparent, req.emit.shards)?;
        let lines = &order.items;
        let product_ids: Vec<&str> = lines.iter().map(|l| l.product_id.as_str()).collect();
        let quantities: Vec<i32> = lines.iter().map(|l| l.quantity.get()).collect();
        let unit_prices: Vec<i64> = lines.iter().map(|l| l.unit_price).collect();
        let line_totals: Vec<i64> = lines.iter().map(|l| l.line_total).collect();
        let address = Json(&order.shipping_address);
        let key = req.idempotency.as_ref();
        let key_text = key.map(|k| k.key);
        let key_hash = key.map(|k| k.request_hash.to_vec());
        let key_expiry = key.map(|k| k.expires_at);

        let stmt = client.prepare_cached(INSERT_ORDER).await?;
        let row = client
            .query_one(
                &stmt,
                &[
                    order.id.as_uuid(),
                    &order.user_id.as_str(),
                    &order.currency.as_str(),
                    &order.total_amount,
                    &address,
                    &now,
                    &product_ids,
                    &quantities,
                    &unit_prices,
                    &line_totals,
                    &placed.history.actor,
                    &key_text,
                    &key_hash,
                    &key_expiry,
                    &event.event_id,
                    &event.topic,
                    &event.payload,
                    &event.headers,
                    &event.shard,
                    &req.emit.notify,
                    &placed.history.reason,
                    &CHANNEL,
                ],
            )
            .await?;
        let inserted: i64 = row.try_get(0)?;
        if inserted == 1 {
            return Ok(Created::New(placed.order));
        }
        let Some(key) = key else {
            return Err(StoreError::Corrupt("order insert returned no row".into()));
        };
        if let Some(found) = find_idempotent_order(client, req.user_id, key).await? {
            return Ok(Created::Replayed(found));
        }
    }
    Err(StoreError::Corrupt(
        "idempotency key kept changing while creating the order".into(),
    ))
}

/// The order an unexpired key points to, if the request matches it.
async fn find_idempotent_order(
    client: &impl GenericClient,
    user_id: &UserId,
    key: &IdempotencyKey<'_>,
) -> Result<Option<Order>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT request_hash, order_id FROM idempotency_keys \
             WHERE user_id = $1 AND key = $2 AND expires_at > now()",
        )
        .await?;
    let Some(row) = client
        .query_opt(&stmt, &[&user_id.as_str(), &key.key])
        .await?
    else {
        return Ok(None);
    };
    let hash: Vec<u8> = row.try_get(0)?;
    if hash != key.request_hash {
        return Err(StoreError::IdempotencyMismatch);
    }
    let order_id: uuid::Uuid = row.try_get(1)?;
    get_order(client, order_id.into(), None).await.map(Some)
}
