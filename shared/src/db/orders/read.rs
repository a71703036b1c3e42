//! Reading orders: one order, a page of them, an order's history. The
//! owner check of reading one order or its history is one SQL condition,
//! `OWNED_BY`; a page of orders filters by its `user_id`.

use crate::StoreError;
use crate::db::GenericClient;
use crate::domain::money::Currency;
use crate::domain::status::UnknownStatus;
use crate::domain::{HistoryEntry, Order, OrderId, OrderLine, OrderStatus, UserId};
use std::sync::LazyLock;
use tokio_postgres::Row;
use tokio_postgres::types::Json;

/// The columns every order read returns, items folded into one JSON array so
/// that an order (or a page of them) is one round trip. [`order_from_row`]
/// reads them by position: by name, every read compares the names of the
/// row's columns (about 1,300 instructions an order, callgrind).
const COLUMNS: [(Col, &str); 16] = [
    (Col::Id, "o.id"),
    (Col::UserId, "o.user_id"),
    (Col::Status, "o.status"),
    (Col::Currency, "o.currency"),
    (Col::TotalAmount, "o.total_amount"),
    (Col::Version, "o.version"),
    (Col::ShippingAddress, "o.shipping_address"),
    (Col::Carrier, "o.carrier"),
    (Col::TrackingNumber, "o.tracking_number"),
    (Col::CancellationReason, "o.cancellation_reason"),
    (Col::PaymentId, "o.payment_id"),
    (Col::InventoryReservedAt, "o.inventory_reserved_at"),
    (Col::ReservationId, "o.reservation_id"),
    (Col::CreatedAt, "o.created_at"),
    (Col::UpdatedAt, "o.updated_at"),
    (
        Col::Items,
        "(SELECT coalesce(jsonb_agg(jsonb_build_object('productId', i.product_id, \
        'quantity', i.quantity, 'unitPrice', i.unit_price, 'lineTotal', i.line_total) \
        ORDER BY i.line_no), '[]'::jsonb) FROM order_items i WHERE i.order_id = o.id) AS items",
    ),
];

/// The position of each of [`COLUMNS`].
#[derive(Debug, Clone, Copy)]
enum Col {
    Id,
    UserId,
    Status,
    Currency,
    TotalAmount,
    Version,
    ShippingAddress,
    Carrier,
    TrackingNumber,
    CancellationReason,
    PaymentId,
    InventoryReservedAt,
    ReservationId,
    CreatedAt,
    UpdatedAt,
    Items,
}

/// Each statement's text, made once rather than at every read (it is
/// also the statement cache's key).
static ORDER_COLUMNS: LazyLock<String> = LazyLock::new(|| COLUMNS.map(|(_, sql)| sql).join(", "));
static SELECT_ORDER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM orders o WHERE o.id = $1 AND {OWNED_BY}",
        *ORDER_COLUMNS
    )
});
static LOCK_ORDER: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *SELECT_ORDER));
static SELECT_ORDERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM orders o WHERE o.id = ANY($1)",
        *ORDER_COLUMNS
    )
});
/// A page's statement for each combination of filters, by [`list_filters`].
static LIST_ORDERS: LazyLock<[String; 8]> = LazyLock::new(|| std::array::from_fn(list_sql));
static HISTORY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT h.from_status, h.to_status, h.reason, h.actor, h.created_at \
         FROM order_status_history h JOIN orders o ON o.id = h.order_id \
         WHERE h.order_id = $1 AND {OWNED_BY} ORDER BY h.id"
    )
});

/// The one owner check of every read: `$2` is the user who must own the
/// order, or NULL for an admin. Someone else's order reads as not found.
const OWNED_BY: &str = "($2::text IS NULL OR o.user_id = $2)";

/// The index in [`LIST_ORDERS`] of a page's filters: status, user, before.
fn list_filters([status, user, before]: [bool; 3]) -> usize {
    usize::from(status) | usize::from(user) << 1 | usize::from(before) << 2
}

/// A page's statement with only the conditions its filters need (see
/// [`list_orders`]), numbered in the order status, user, before, limit.
fn list_sql(filters: usize) -> String {
    let mut conditions = Vec::new();
    for (bit, condition) in [(1, "o.status = $"), (2, "o.user_id = $"), (4, "o.id < $")] {
        if filters & bit != 0 {
            conditions.push(format!("{condition}{}", conditions.len() + 1));
        }
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conditions.join(" AND "))
    };
    format!(
        "SELECT {} FROM orders o {filter}ORDER BY o.id DESC LIMIT ${}",
        *ORDER_COLUMNS,
        conditions.len() + 1
    )
}

fn parse_status(text: String) -> Result<OrderStatus, StoreError> {
    text.parse()
        .map_err(|e: UnknownStatus| StoreError::Corrupt(e.to_string()))
}

fn order_from_row(row: &Row) -> Result<Order, StoreError> {
    let at = |col: Col| col as usize;
    // Straight from the jsonb bytes into the types, without a
    // `serde_json::Value` tree in between.
    let Json(items) = row.try_get::<_, Json<Vec<OrderLine>>>(at(Col::Items))?;
    let address: Option<Json<_>> = row.try_get(at(Col::ShippingAddress))?;
    let currency: String = row.try_get(at(Col::Currency))?;
    Ok(Order {
        id: OrderId::from(row.try_get::<_, uuid::Uuid>(at(Col::Id))?),
        user_id: UserId::new(row.try_get::<_, String>(at(Col::UserId))?),
        status: parse_status(row.try_get(at(Col::Status))?)?,
        items,
        total_amount: row.try_get(at(Col::TotalAmount))?,
        currency: Currency::parse(&currency)
            .map_err(|e| StoreError::Corrupt(format!("currency {currency:?}: {e}")))?,
        version: row.try_get(at(Col::Version))?,
        shipping_address: address.map(|Json(a)| a),
        carrier: row.try_get(at(Col::Carrier))?,
        tracking_number: row.try_get(at(Col::TrackingNumber))?,
        cancellation_reason: row.try_get(at(Col::CancellationReason))?,
        payment_id: row.try_get(at(Col::PaymentId))?,
        inventory_reserved_at: row.try_get(at(Col::InventoryReservedAt))?,
        reservation_id: row.try_get(at(Col::ReservationId))?,
        created_at: row.try_get(at(Col::CreatedAt))?,
        updated_at: row.try_get(at(Col::UpdatedAt))?,
    })
}

/// One order with its items; `owner` set: only if it is theirs.
#[tracing::instrument(level = "debug", skip_all, fields(order_id = %id))]
pub async fn get_order(
    client: &impl GenericClient,
    id: OrderId,
    owner: Option<&UserId>,
) -> Result<Order, StoreError> {
    select_order(client, id, owner, &SELECT_ORDER).await
}

/// Locks the order (`FOR UPDATE`, until the transaction ends) and loads it;
/// `owner` set: only if it is theirs (else not found).
pub async fn lock_order(
    client: &impl GenericClient,
    id: OrderId,
    owner: Option<&UserId>,
) -> Result<Order, StoreError> {
    select_order(client, id, owner, &LOCK_ORDER).await
}

async fn select_order(
    client: &impl GenericClient,
    id: OrderId,
    owner: Option<&UserId>,
    sql: &str,
) -> Result<Order, StoreError> {
    let stmt = client.prepare_cached(sql).await?;
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
    let stmt = client.prepare_cached(&SELECT_ORDERS).await?;
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
    type Param<'p> = &'p (dyn tokio_postgres::types::ToSql + Sync);
    let filters = [status.is_some(), user.is_some(), before.is_some()];
    let mut params: Vec<Param> = Vec::with_capacity(4);
    params.extend(status.as_ref().map(|s| s as Param));
    params.extend(user.as_ref().map(|u| u as Param));
    params.extend(before.as_ref().map(|b| b as Param));
    params.push(&limit);
    let sql = &LIST_ORDERS[list_filters(filters)];
    let stmt = client.prepare_cached(sql).await?;
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
    let stmt = client.prepare_cached(&HISTORY).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_is_read_at_its_position() {
        for (i, (col, _)) in COLUMNS.iter().enumerate() {
            assert_eq!(*col as usize, i, "{col:?}");
        }
    }

    #[test]
    fn a_page_s_statement_numbers_the_filters_it_has() {
        let page = |filters| {
            let sql = &LIST_ORDERS[list_filters(filters)];
            sql.split_once(" FROM orders o ").unwrap().1.to_owned()
        };
        let cases = [
            ([false, false, false], "ORDER BY o.id DESC LIMIT $1"),
            (
                [false, true, false],
                "WHERE o.user_id = $1 ORDER BY o.id DESC LIMIT $2",
            ),
            (
                [true, false, true],
                "WHERE o.status = $1 AND o.id < $2 ORDER BY o.id DESC LIMIT $3",
            ),
            (
                [true, true, true],
                "WHERE o.status = $1 AND o.user_id = $2 AND o.id < $3 ORDER BY o.id DESC LIMIT $4",
            ),
        ];
        for (filters, tail) in cases {
            assert_eq!(page(filters), tail, "{filters:?}");
        }
        let distinct: std::collections::HashSet<_> = LIST_ORDERS.iter().collect();
        assert_eq!(distinct.len(), 8);
    }
}
