//! `order.snapshot` events (`order-relay snapshot`): select orders, and
//! write one outbox row per order that restates its current version. The
//! order's row is locked while its snapshot row is written, so the row sits
//! after every earlier event of the order and before every later one: the
//! relay publishes it in order with them.

use crate::StoreError;
use crate::db::GenericClient;
use crate::db::orders::lock_order;
use crate::db::outbox::CHANNEL;
use crate::domain::events::{EventData, outbox_event};
use crate::domain::{Order, OrderId, OrderStatus};
use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

/// Which orders to snapshot; the conditions are AND-ed. An empty filter
/// selects every order, so the command asks for `--all` to mean it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// Only these orders (`--order`, repeatable); empty: any.
    pub orders: Vec<OrderId>,
    /// Only orders changed at or after this time (`--since`, on `updatedAt`).
    pub since: Option<DateTime<Utc>>,
    /// Only orders in this status (`--status`).
    pub status: Option<OrderStatus>,
}

/// One order picked for a snapshot, as the dry run prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    /// The order.
    pub id: OrderId,
    /// Its version when read.
    pub version: i64,
    /// Its status when read.
    pub status: OrderStatus,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

const SELECT_PAGE: &str = "\
SELECT id, version, status, updated_at FROM orders
WHERE (cardinality($1::uuid[]) = 0 OR id = ANY($1))
  AND ($2::timestamptz IS NULL OR updated_at >= $2)
  AND ($3::text IS NULL OR status = $3)
  AND id > $4
ORDER BY id
LIMIT $5";

/// The next `limit` selected orders after `after` (keyset paging by id, so
/// a long run neither skips nor repeats an order that changes meanwhile).
pub async fn select_page(
    client: &impl GenericClient,
    filter: &SnapshotFilter,
    after: Option<OrderId>,
    limit: i64,
) -> Result<Vec<Picked>, StoreError> {
    let ids: Vec<Uuid> = filter.orders.iter().map(|id| *id.as_uuid()).collect();
    let status = filter.status.map(OrderStatus::as_str);
    let after = after.map_or(Uuid::nil(), |id| *id.as_uuid());
    let stmt = client.prepare_cached(SELECT_PAGE).await?;
    let rows = client
        .query(&stmt, &[&ids, &filter.since, &status, &after, &limit])
        .await?;
    rows.iter()
        .map(|r| {
            let status: String = r.try_get(2)?;
            Ok(Picked {
                id: OrderId::from(r.try_get::<_, Uuid>(0)?),
                version: r.try_get(1)?,
                status: status
                    .parse()
                    .map_err(|e: crate::domain::status::UnknownStatus| {
                        StoreError::Corrupt(e.to_string())
                    })?,
                updated_at: r.try_get(3)?,
            })
        })
        .collect()
}

const INSERT_SNAPSHOT: &str = "\
WITH ob AS (
    INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic,
                        payload, headers, shard)
    VALUES ($1, $2, $3, $4, $4, $5, $6, $7)
), n AS (
    SELECT pg_notify($9, $7::int4::text) WHERE $8
)
SELECT count(*) FROM n";

/// Writes the snapshot event of order `id` (locked for the transaction the
/// caller owns) and returns the order it restates; `None` when the order is
/// gone.
pub async fn write_snapshot(
    client: &impl GenericClient,
    id: OrderId,
    shards: u32,
    notify: bool,
) -> Result<Option<Order>, StoreError> {
    let order = match lock_order(client, id, None).await {
        Ok(order) => order,
        Err(StoreError::NotFound) => return Ok(None),
        Err(other) => return Err(other),
    };
    let now = Utc::now().trunc_subsecs(6);
    let event = EventData::Snapshot { order: &order }.at(now);
    let row = outbox_event(&order, &event, None, shards)?;
    let stmt = client.prepare_cached(INSERT_SNAPSHOT).await?;
    client
        .query_one(
            &stmt,
            &[
                &row.event_id,
                order.id.as_uuid(),
                &row.version,
                &row.topic,
                &row.payload,
                &row.headers,
                &row.shard,
                &notify,
                &CHANNEL,
            ],
        )
        .await?;
    Ok(Some(order))
}
