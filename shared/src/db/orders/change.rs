//! Writing a status change: lock the order, let the domain decide
//! ([`crate::domain::Order::apply`]), write what it returned.

use super::read::lock_order;
use crate::StoreError;
use crate::db::Emit;
use crate::db::GenericClient;
use crate::db::outbox::CHANNEL;
use crate::domain::events::outbox_event;
use crate::domain::{
    Changed, DomainError, HistoryEntry, Order, OrderId, OrderStatus, Step, Transition,
};
use chrono::{SubsecRound, Utc};

/// What a transition did.
#[derive(Debug, Clone, PartialEq)]
pub enum TransitionOutcome {
    /// Applied: version bumped, history and outbox rows written.
    Applied {
        /// The order after the change.
        order: Order,
        /// Its status before.
        from: OrderStatus,
    },
    /// The order already had the requested status: nothing written.
    Unchanged(Order),
    /// The domain refused the change: nothing written.
    Refused(DomainError),
}

const APPLY_CHANGE: &str = "\
WITH u AS (
    UPDATE orders SET status = $2, version = $3::bigint, updated_at = $4,
        payment_id = $5, carrier = $6, tracking_number = $7, cancellation_reason = $8
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
    SELECT pg_notify($18, $16::int4::text) FROM u WHERE $17
)
SELECT count(*), (SELECT count(*) FROM n) FROM u";

/// Writes a change the domain made to a locked order: the order's new
/// state, its history row and its outbox row, in one statement.
pub async fn write_changed(
    client: &impl GenericClient,
    changed: &Changed,
    emit: &Emit<'_>,
) -> Result<(), StoreError> {
    let order = &changed.order;
    let history = &changed.history;
    let event = outbox_event(order, &changed.event, emit.traceparent, emit.shards)?;
    let stmt = client.prepare_cached(APPLY_CHANGE).await?;
    let row = client
        .query_one(
            &stmt,
            &[
                order.id.as_uuid(),
                &order.status.as_str(),
                &order.version,
                &order.updated_at,
                &order.payment_id,
                &order.carrier,
                &order.tracking_number,
                &order.cancellation_reason,
                &history.from_status.map(OrderStatus::as_str),
                &history.reason,
                &history.actor,
                &event.event_id,
                &event.topic,
                &event.payload,
                &event.headers,
                &event.shard,
                &emit.notify,
                &CHANNEL,
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
    Ok(())
}

/// Appends a history row of `order_id`.
pub async fn write_history(
    client: &impl GenericClient,
    order_id: OrderId,
    entry: &HistoryEntry,
) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO order_status_history \
             (order_id, from_status, to_status, reason, actor, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                order_id.as_uuid(),
                &entry.from_status.map(OrderStatus::as_str),
                &entry.to_status.as_str(),
                &entry.reason,
                &entry.actor,
                &entry.at,
            ],
        )
        .await?;
    Ok(())
}

/// Applies a status change: lock the row, let the domain decide, write the
/// order, history and outbox rows. Must run inside the caller's transaction
/// (the row lock is what orders one order's outbox rows by version).
#[tracing::instrument(level = "debug", skip_all, fields(order_id = %t.order_id, to = %t.change.target()))]
pub async fn transition_order(
    client: &impl GenericClient,
    t: &Transition<'_>,
    emit: &Emit<'_>,
) -> Result<TransitionOutcome, StoreError> {
    let current = lock_order(client, t.order_id, t.owner).await?;
    // PostgreSQL keeps microseconds: round now so the answer equals a later read.
    let now = Utc::now().trunc_subsecs(6);
    match current.apply_transition(t, now) {
        Err(refused) => Ok(TransitionOutcome::Refused(refused)),
        Ok(Step::Unchanged) => Ok(TransitionOutcome::Unchanged(current)),
        Ok(Step::Changed(changed)) => {
            write_changed(client, &changed, emit).await?;
            Ok(TransitionOutcome::Applied {
                from: current.status,
                order: changed.order,
            })
        }
    }
}
