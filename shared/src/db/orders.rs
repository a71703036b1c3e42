//! Orders, their items, history and outbox rows: every write that changes an
//! order also writes its outbox row, in the same statement or transaction.

use super::GenericClient;
use crate::StoreError;
use crate::domain::events::{EventData, OutboxEvent, outbox_event};
use crate::domain::{HistoryEntry, NewOrder, Order, OrderLine, OrderStatus, TransitionCheck};
use chrono::{DateTime, SubsecRound, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

/// The columns every order read returns, items folded into one JSON array so
/// that an order (or a page of them) is one round trip.
const ORDER_COLUMNS: &str = "o.id, o.user_id, o.status, o.currency, o.total_amount, o.version, \
    o.shipping_address, o.carrier, o.tracking_number, o.cancellation_reason, o.payment_id, \
    o.inventory_reserved_at, o.reservation_id, o.created_at, o.updated_at, \
    (SELECT coalesce(jsonb_agg(jsonb_build_object('productId', i.product_id, \
        'quantity', i.quantity, 'unitPrice', i.unit_price, 'lineTotal', i.line_total) \
        ORDER BY i.line_no), '[]'::jsonb) FROM order_items i WHERE i.order_id = o.id) AS items";

fn order_from_row(row: &Row) -> Result<Order, StoreError> {
    let status: String = row.try_get("status")?;
    let items: serde_json::Value = row.try_get("items")?;
    let address: Option<serde_json::Value> = row.try_get("shipping_address")?;
    Ok(Order {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        status: status
            .parse()
            .map_err(|e: crate::domain::status::UnknownStatus| {
                StoreError::Corrupt(e.to_string())
            })?,
        items: serde_json::from_value::<Vec<OrderLine>>(items)?,
        total_amount: row.try_get("total_amount")?,
        currency: row.try_get("currency")?,
        version: row.try_get("version")?,
        shipping_address: address.map(serde_json::from_value).transpose()?,
        carrier: row.try_get("carrier")?,
        tracking_number: row.try_get("tracking_number")?,
        cancellation_reason: row.try_get("cancellation_reason")?,
        payment_id: row.try_get("payment_id")?,
        inventory_reserved_at: row.try_get("inventory_reserved_at")?,
        reservation_id: row.try_get("reservation_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// An Idempotency-Key presented with a create request.
#[derive(Debug, Clone)]
pub struct IdempotencyKey<'a> {
    pub key: &'a str,
    /// SHA-256 of the canonical request, to tell "same request" from "other body".
    pub request_hash: [u8; 32],
    pub expires_at: DateTime<Utc>,
}

/// Everything needed to insert a new order and its `order.placed` event.
#[derive(Debug, Clone)]
pub struct CreateOrder<'a> {
    pub user_id: &'a str,
    pub order: &'a NewOrder,
    pub actor: &'a str,
    pub idempotency: Option<IdempotencyKey<'a>>,
    pub traceparent: Option<&'a str>,
    pub shards: u32,
    /// Send a NOTIFY (the relay's wake-up hint) with the outbox row.
    pub notify: bool,
}

/// Whether a create inserted a new order or replayed an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New(Order),
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
    SELECT o.id, NULL, 'PENDING', 'order placed', $11, $6 FROM o
), ob AS (
    INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic,
                        payload, headers, shard)
    SELECT $15, o.id, 1, $16, $16, $17, $18, $19 FROM o
), n AS (
    SELECT pg_notify('order_outbox', $19::int4::text) FROM o WHERE $20
)
SELECT count(*), (SELECT count(*) FROM n) FROM o";

/// Inserts a new order with its `order.placed` outbox row, or, when the same
/// user already used the Idempotency-Key, returns the order created then.
#[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
pub async fn create_order(
    client: &impl GenericClient,
    req: &CreateOrder<'_>,
) -> Result<Created, StoreError> {
    // A key can expire between our conflict and our read: try twice.
    for _ in 0..2 {
        // PostgreSQL keeps microseconds: round now so the answer equals a later read.
        let now = Utc::now().trunc_subsecs(6);
        let order = Order {
            id: Uuid::now_v7(),
            user_id: req.user_id.to_owned(),
            status: OrderStatus::Pending,
            items: req.order.lines.clone(),
            total_amount: req.order.total_amount,
            currency: req.order.currency.as_str().to_owned(),
            version: 1,
            shipping_address: Some(req.order.shipping_address.clone()),
            carrier: None,
            tracking_number: None,
            cancellation_reason: None,
            payment_id: None,
            inventory_reserved_at: None,
            reservation_id: None,
            created_at: now,
            updated_at: now,
        };
        let data = EventData::Placed {
            items: &order.items,
            total_amount: order.total_amount,
            currency: &order.currency,
            shipping_address: order.shipping_address.as_ref(),
        };
        let event = outbox_event(&order, &data, now, req.traceparent, req.shards);
        let lines = &order.items;
        let product_ids: Vec<&str> = lines.iter().map(|l| l.product_id.as_str()).collect();
        let quantities: Vec<i32> = lines.iter().map(|l| l.quantity).collect();
        let unit_prices: Vec<i64> = lines.iter().map(|l| l.unit_price).collect();
        let line_totals: Vec<i64> = lines.iter().map(|l| l.line_total).collect();
        let address = serde_json::to_value(&order.shipping_address)?;
        let key = req.idempotency.as_ref();
        let key_text = key.map(|k| k.key);
        let key_hash = key.map(|k| k.request_hash.to_vec());
        let key_expiry = key.map(|k| k.expires_at);

        let stmt = client.prepare_cached(INSERT_ORDER).await?;
        let row = client
            .query_one(
                &stmt,
                &[
                    &order.id,
                    &order.user_id,
                    &order.currency,
                    &order.total_amount,
                    &address,
                    &now,
                    &product_ids,
                    &quantities,
                    &unit_prices,
                    &line_totals,
                    &req.actor,
                    &key_text,
                    &key_hash,
                    &key_expiry,
                    &event.event_id,
                    &event.topic,
                    &event.payload,
                    &event.headers,
                    &event.shard,
                    &req.notify,
                ],
            )
            .await?;
        let inserted: i64 = row.try_get(0)?;
        if inserted == 1 {
            return Ok(Created::New(order));
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
    user_id: &str,
    key: &IdempotencyKey<'_>,
) -> Result<Option<Order>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT request_hash, order_id FROM idempotency_keys \
             WHERE user_id = $1 AND key = $2 AND expires_at > now()",
        )
        .await?;
    let Some(row) = client.query_opt(&stmt, &[&user_id, &key.key]).await? else {
        return Ok(None);
    };
    let hash: Vec<u8> = row.try_get(0)?;
    if hash != key.request_hash {
        return Err(StoreError::IdempotencyMismatch);
    }
    let order_id: Uuid = row.try_get(1)?;
    get_order(client, order_id).await.map(Some)
}

/// Deletes expired idempotency keys, at most `batch` per call; returns how many.
pub async fn purge_expired_idempotency_keys(
    client: &impl GenericClient,
    batch: i64,
) -> Result<u64, StoreError> {
    let stmt = client
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE (user_id, key) IN (\
             SELECT user_id, key FROM idempotency_keys WHERE expires_at <= now() LIMIT $1)",
        )
        .await?;
    Ok(client.execute(&stmt, &[&batch]).await?)
}

/// One order with its items.
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn get_order(client: &impl GenericClient, id: Uuid) -> Result<Order, StoreError> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = $1");
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(&stmt, &[&id])
        .await?
        .ok_or(StoreError::NotFound)?;
    order_from_row(&row)
}

/// Filters and position of a page of orders, newest first.
#[derive(Debug, Clone, Default)]
pub struct OrderQuery<'a> {
    pub user_id: Option<&'a str>,
    pub status: Option<OrderStatus>,
    /// Only orders older than this id (the last id of the previous page).
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// A page of orders, newest first, and the id to continue after (if any).
#[derive(Debug, Clone)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    pub next_before: Option<Uuid>,
}

/// Lists orders newest first (ids are UUIDv7, so id order is time order).
#[tracing::instrument(skip_all)]
pub async fn list_orders(
    client: &impl GenericClient,
    query: &OrderQuery<'_>,
) -> Result<OrderPage, StoreError> {
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM orders o \
         WHERE ($1::text IS NULL OR o.user_id = $1) \
           AND ($2::text IS NULL OR o.status = $2) \
           AND ($3::uuid IS NULL OR o.id < $3) \
         ORDER BY o.id DESC LIMIT $4"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let status = query.status.map(OrderStatus::as_str);
    let rows = client
        .query(
            &stmt,
            &[&query.user_id, &status, &query.before, &(query.limit + 1)],
        )
        .await?;
    let mut orders = rows
        .iter()
        .map(order_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let more = orders.len() as i64 > query.limit;
    orders.truncate(query.limit.max(0) as usize);
    let next_before = if more {
        orders.last().map(|o| o.id)
    } else {
        None
    };
    Ok(OrderPage {
        orders,
        next_before,
    })
}

/// The order's status changes, oldest first.
pub async fn order_history(
    client: &impl GenericClient,
    order_id: Uuid,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT from_status, to_status, reason, actor, created_at \
             FROM order_status_history WHERE order_id = $1 ORDER BY id",
        )
        .await?;
    let rows = client.query(&stmt, &[&order_id]).await?;
    rows.iter()
        .map(|row| {
            let parse = |s: String| {
                s.parse::<OrderStatus>()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            };
            Ok(HistoryEntry {
                from_status: row
                    .try_get::<_, Option<String>>(0)?
                    .map(parse)
                    .transpose()?,
                to_status: parse(row.try_get(1)?)?,
                reason: row.try_get(2)?,
                actor: row.try_get(3)?,
                at: row.try_get(4)?,
            })
        })
        .collect()
}

/// The change asked for, with the data that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Confirm {
        payment_id: Option<String>,
    },
    Ship {
        carrier: String,
        tracking_number: String,
    },
    Deliver,
    Cancel {
        reason: Option<String>,
    },
}

impl Change {
    pub fn target(&self) -> OrderStatus {
        match self {
            Change::Confirm { .. } => OrderStatus::Confirmed,
            Change::Ship { .. } => OrderStatus::Shipped,
            Change::Deliver => OrderStatus::Delivered,
            Change::Cancel { .. } => OrderStatus::Cancelled,
        }
    }
}

/// A status change request, from the API or from a consumed event.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub order_id: Uuid,
    pub change: Change,
    /// When set, the order must belong to this user (else: not found).
    pub owner: Option<&'a str>,
    /// Who asks, for the history (`user:alice`, `admin:bob`, `payment.authorized`).
    pub actor: &'a str,
    pub traceparent: Option<&'a str>,
    pub shards: u32,
    /// Send a NOTIFY (the relay's wake-up hint) with the outbox row.
    pub notify: bool,
}

/// What a transition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    /// Applied: version bumped, history and outbox rows written.
    Applied { order: Order, from: OrderStatus },
    /// The order already had the requested status: nothing written.
    Unchanged(Order),
}

/// Locks the order, loads it and checks that `owner` may see it.
async fn lock_order(
    client: &impl GenericClient,
    order_id: Uuid,
    owner: Option<&str>,
) -> Result<Order, StoreError> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = $1 FOR UPDATE");
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(&stmt, &[&order_id])
        .await?
        .ok_or(StoreError::NotFound)?;
    let order = order_from_row(&row)?;
    match owner {
        Some(owner) if owner != order.user_id => Err(StoreError::NotFound),
        _ => Ok(order),
    }
}

const APPLY_TRANSITION: &str = "\
WITH u AS (
    UPDATE orders SET status = $2, version = $3::bigint, updated_at = $4,
        payment_id = coalesce($5, payment_id),
        carrier = coalesce($6, carrier),
        tracking_number = coalesce($7, tracking_number),
        cancellation_reason = coalesce($8, cancellation_reason)
    WHERE id = $1 AND version = $3::bigint - 1
    RETURNING id
), h AS (
    INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, created_at)
    SELECT u.id, $9, $2, $10, $11, $4 FROM u
), ob AS (
    INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic,
                        payload, headers, shard)
    SELECT $12, u.id, $3::bigint, $13, $13, $14, $15, $16 FROM u
), n AS (
    SELECT pg_notify('order_outbox', $16::int4::text) FROM u WHERE $17
)
SELECT count(*), (SELECT count(*) FROM n) FROM u";

/// Applies a status change: lock the row, check the state machine, bump the
/// version, write history and outbox. Must run inside the caller's transaction
/// (the row lock is what orders one order's outbox rows by version).
#[tracing::instrument(skip_all, fields(order_id = %t.order_id, to = %t.change.target()))]
pub async fn transition_order(
    client: &impl GenericClient,
    t: &Transition<'_>,
) -> Result<TransitionOutcome, StoreError> {
    let current = lock_order(client, t.order_id, t.owner).await?;
    let to = t.change.target();
    match current.status.check_transition(to) {
        TransitionCheck::AlreadyThere => return Ok(TransitionOutcome::Unchanged(current)),
        TransitionCheck::Refused => {
            return Err(StoreError::InvalidTransition {
                current: current.status,
                requested: to,
            });
        }
        TransitionCheck::Apply => {}
    }
    let from = current.status;
    let now = Utc::now().trunc_subsecs(6);
    let mut order = current;
    order.status = to;
    order.version += 1;
    order.updated_at = now;
    let reason = match &t.change {
        Change::Confirm { payment_id } => {
            order.payment_id = payment_id.clone().or(order.payment_id);
            None
        }
        Change::Ship {
            carrier,
            tracking_number,
        } => {
            order.carrier = Some(carrier.clone());
            order.tracking_number = Some(tracking_number.clone());
            None
        }
        Change::Deliver => None,
        Change::Cancel { reason } => {
            order.cancellation_reason = reason.clone();
            reason.clone()
        }
    };
    let data = match &t.change {
        Change::Confirm { .. } => EventData::Confirmed {
            payment_id: order.payment_id.as_deref(),
        },
        Change::Ship {
            carrier,
            tracking_number,
        } => EventData::Shipped {
            carrier,
            tracking_number,
        },
        Change::Deliver => EventData::Delivered { delivered_at: now },
        Change::Cancel { reason } => EventData::Cancelled {
            reason: reason.as_deref(),
            previous_status: from,
            items: &order.items,
        },
    };
    let event: OutboxEvent = outbox_event(&order, &data, now, t.traceparent, t.shards);
    let stmt = client.prepare_cached(APPLY_TRANSITION).await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &order.id,
                &to.as_str(),
                &order.version,
                &now,
                &order.payment_id,
                &order.carrier,
                &order.tracking_number,
                &order.cancellation_reason,
                &from.as_str(),
                &reason,
                &t.actor,
                &event.event_id,
                &event.topic,
                &event.payload,
                &event.headers,
                &event.shard,
                &t.notify,
            ],
        )
        .await?;
    let updated: i64 = row.try_get(0)?;
    if updated != 1 {
        // Impossible while the row lock is held; refuse rather than emit a gap.
        return Err(StoreError::Corrupt(format!(
            "order {} changed version under its row lock",
            order.id
        )));
    }
    Ok(TransitionOutcome::Applied { order, from })
}
