//! Reading orders: one order, a page of them, an order's history. The
//! owner check of reading one order or its history is one SQL condition,
//! [`OWNED_BY`]; a page of orders filters by its `user_id`.

use crate::StoreError;
use crate::db::GenericClient;
use crate::domain::money::Currency;
use crate::domain::status::UnknownStatus;
use crate::domain::{HistoryEntry, Order, OrderId, OrderLine, OrderStatus, UserId};
use tokio_postgres::Row;
use tokio_postgres::types::Json;

/// The columns every order read returns, items folded into one JSON array so
/// that an order (or a page of them) is one round trip.
const ORDER_COLUMNS: &str = "o.id, o.user_id, o.status, o.currency, o.total_amount, o.version, \
    o.shipping_address, o.carrier, o.tracking_number, o.cancellation_reason, o.payment_id, \
    o.inventory_reserved_at, o.reservation_id, o.created_at, o.updated_at, \
    (SELECT coalesce(jsonb_agg(jsonb_build_object('productId', i.product_id, \
        'quantity', i.quantity, 'unitPrice', i.unit_price, 'lineTotal', i.line_total) \
        ORDER BY i.line_no), '[]'::jsonb) FROM order_items i WHERE i.order_id = o.id) AS items";

/// The one owner check of every read: `$2` is the user who must own the
/// order, or NULL for an admin. Someone else's order reads as not found.
const OWNED_BY: &str = "($2::text IS NULL OR o.user_id = $2)";

fn parse_status(text: String) -> Result<OrderStatus, StoreError> {
    text.parse()
        .map_err(|e: UnknownStatus| StoreError::Corrupt(e.to_string()))
}

fn order_from_row(row: &Row) -> Result<Order, StoreError> {
    // Straight from the jsonb bytes into the types, without a
    // `serde_json::Value` tree in between.
    let Json(items) = row.try_get::<_, Json<Vec<OrderLine>>>("items")?;
    let address: Option<Json<_>> = row.try_get("shipping_address")?;
    let currency: String = row.try_get("currency")?;
    Ok(Order {
        id: OrderId::from(row.try_get::<_, uuid::Uuid>("id")?),
        user_id: UserId::new(row.try_get::<_, String>("user_id")?),
        status: parse_status(row.try_get("status")?)?,
        items,
        total_amount: row.try_get("total_amount")?,
        currency: Currency::parse(&currency)
            .map_err(|e| StoreError::Corrupt(format!("currency {currency:?}: {e}")))?,
        version: row.try_get("version")?,
        shipping_address: address.map(|Json(a)| a),
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

/// One order with its items; `owner` set: only if it is theirs.
#[tracing::instrument(level = "debug", skip_all, fields(order_id = %id))]
pub async fn get_order(
    client: &impl GenericClient,
    id: OrderId,
    owner: Option<&UserId>,
) -> Result<Order, StoreError> {
    select_order(client, id, owner, "").await
}

/// Locks the order (`FOR UPDATE`, until the transaction ends) and loads it;
/// `owner` set: only if it is theirs (else not found).
pub async fn lock_order(
    client: &impl GenericClient,
    id: OrderId,
    owner: Option<&UserId>,
) -> Result<Order, StoreError> {
    select_order(client, id, owner, "FOR UPDATE").await
}

async fn select_order(
    client: &impl GenericClient,
    id: OrderId,
    owner: Option<&UserId>,
    lock: &str,
) -> Result<Order, StoreError> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = $1 AND {OWNED_BY} {lock}");
    let stmt = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(&stmt, &[id.as_uuid(), &owner.map(UserId::as_str)])
        .await?
        .ok_or(StoreError::NotFound)?;
    order_from_row(&row)
}

/// Several orders by id (any owner), in no particular order; missing ids
/// are left out. For the API's live updates.
pub async fn get_orders(
    client: &impl GenericClient,
    ids: &[OrderId],
) -> Result<Vec<Order>, StoreError> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = ANY($1)");
    let stmt = client.prepare_cached(&sql).await?;
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
    let rows = client.query(&stmt, &[&ids]).await?;
    rows.iter().map(order_from_row).collect()
}

/// Filters and position of a page of orders, newest first.
#[derive(Debug, Clone, Default)]
pub struct OrderQuery<'a> {
    /// Only this user's orders.
    pub user_id: Option<&'a UserId>,
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
    /// Only orders older than this id (the last id of the previous page).
    pub before: Option<OrderId>,
    /// Page size.
    pub limit: i64,
}

/// Some orders, newest first, and the id to continue after (if any).
#[derive(Debug, Clone)]
pub struct OrderSlice {
    /// At most `limit` orders.
    pub orders: Vec<Order>,
    /// Set when more orders follow: pass it as `before`.
    pub next_before: Option<OrderId>,
}

/// Lists orders newest first (ids are UUIDv7, so id order is time order).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn list_orders(
    client: &impl GenericClient,
    query: &OrderQuery<'_>,
) -> Result<OrderSlice, StoreError> {
    // One statement per combination of filters, each with only the
    // conditions it needs: a generic plan of `($1 IS NULL OR o.user_id = $1)`
    // cannot use the (user_id, id) index and walks the newest orders of
    // everyone (measured: 60 ms for a user whose orders are not the newest).
    let status = query.status.map(OrderStatus::as_str);
    let user = query.user_id.map(UserId::as_str);
    let before = query.before.map(uuid::Uuid::from);
    let limit = query.limit + 1;
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
    if let Some(status) = &status {
        params.push(status);
        conditions.push(format!("o.status = ${}", params.len()));
    }
    if let Some(user) = &user {
        params.push(user);
        conditions.push(format!("o.user_id = ${}", params.len()));
    }
    if let Some(before) = &before {
        params.push(before);
        conditions.push(format!("o.id < ${}", params.len()));
    }
    params.push(&limit);
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM orders o {filter} ORDER BY o.id DESC LIMIT ${}",
        params.len()
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &params).await?;
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
    Ok(OrderSlice {
        orders,
        next_before,
    })
}

/// The order's status changes, oldest first; `owner` set: only if it is
/// theirs. Every order has at least its placement row, so none means not found.
pub async fn order_history(
    client: &impl GenericClient,
    order_id: OrderId,
    owner: Option<&UserId>,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let sql = format!(
        "SELECT h.from_status, h.to_status, h.reason, h.actor, h.created_at \
         FROM order_status_history h JOIN orders o ON o.id = h.order_id \
         WHERE h.order_id = $1 AND {OWNED_BY} ORDER BY h.id"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client
        .query(&stmt, &[order_id.as_uuid(), &owner.map(UserId::as_str)])
        .await?;
    if rows.is_empty() {
        return Err(StoreError::NotFound);
    }
    rows.iter()
        .map(|row| {
            Ok(HistoryEntry {
                from_status: row
                    .try_get::<_, Option<String>>(0)?
                    .map(parse_status)
                    .transpose()?,
                to_status: parse_status(row.try_get(1)?)?,
                reason: row.try_get(2)?,
                actor: row.try_get(3)?,
                at: row.try_get(4)?,
            })
        })
        .collect()
}
