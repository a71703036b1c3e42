//! The consumer's inbox: applying an inbound event exactly once in effect.
//! One transaction records the idempotency key in `processed_events` (a
//! conflict means "already applied"), locks and reads the order (both in
//! one round trip) and writes what the domain decided
//! ([`InboundEvent::react`]) with its history and outbox rows; the caller
//! stores the Kafka offset only after the commit.

use super::live::Hint;
use super::orders::change::{write_changed, write_history};
use super::orders::read::lock_order;
use super::{Emit, GenericClient};
use crate::StoreError;
use crate::domain::{InboundEvent, OrderStatus, Reaction};
use chrono::{SubsecRound, Utc};

/// What consuming one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The change was applied (and, for payments, an event emitted).
    Applied {
        /// The status change it made (none for an inventory reservation).
        transition: Option<(OrderStatus, OrderStatus)>,
        /// The order's new version, for the live-update hint the caller
        /// sends after its commit (none when the version did not change).
        changed: Option<Hint>,
    },
    /// The key was seen before: nothing done.
    Duplicate,
    /// Valid, but the order's status (`status`) does not allow it: noted
    /// in the history, nothing emitted.
    Ignored {
        /// The order's status.
        status: OrderStatus,
    },
}

impl Outcome {
    /// The label of the outcome (`consumed_events_total{outcome}`, the inbox row).
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored { .. } => "ignored",
        }
    }
}

/// Everything `apply_inbound` needs besides the event.
#[derive(Debug, Clone)]
pub struct InboundContext<'a> {
    /// The idempotency key (`ce_id`, else the payload's `eventId`).
    pub key: &'a str,
    /// Where the key is unique: the `ce_source` header, else the topic
    /// without its prefix. The same key in two scopes is two events.
    pub scope: &'a str,
    /// The topic it came from (for the inbox row and the history actor).
    pub topic: &'a str,
    /// How an emitted event is written.
    pub emit: Emit<'a>,
}

/// Applies `event` once per key. Must run in the caller's transaction;
/// `Err(NotFound)` means an unknown order (dead-letter it; roll back).
pub async fn apply_inbound(
    client: &impl GenericClient,
    ctx: &InboundContext<'_>,
    event: &InboundEvent,
) -> Result<Outcome, StoreError> {
    let order_id = event.order_id();
    let insert = client
        .prepare_cached(
            "INSERT INTO processed_events (scope, event_key, topic, order_id, outcome) \
             VALUES ($1, $2, $3, $4, 'applied') ON CONFLICT (scope, event_key) DO NOTHING",
        )
        .await?;
    // The inbox row and the order's lock in one round trip: both statements
    // are sent at once (pipelined, run in this order). A duplicate only
    // holds the order's lock until the caller's transaction ends.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&ctx.scope, &ctx.key, &ctx.topic, order_id.as_uuid()];
    let (inserted, locked) = tokio::join!(
        client.execute(&insert, &params),
        lock_order(client, order_id, None)
    );
    if inserted? == 0 {
        return Ok(Outcome::Duplicate);
    }
    let order = locked?;
    let now = Utc::now().trunc_subsecs(6);
    let outcome = match event.react(&order, ctx.topic, now) {
        Reaction::Changed(changed) => {
            write_changed(client, &changed, &ctx.emit).await?;
            Outcome::Applied {
                transition: Some((order.status, changed.order.status)),
                changed: Some(Hint {
                    order_id,
                    version: changed.order.version,
                    user_id: changed.order.user_id.clone(),
                }),
            }
        }
        Reaction::Reserved { order, history } => {
            let stmt = client
                .prepare_cached(
                    "UPDATE orders SET inventory_reserved_at = $2, reservation_id = $3, \
                     updated_at = $4 WHERE id = $1",
                )
                .await?;
            client
                .execute(
                    &stmt,
                    &[
                        order.id.as_uuid(),
                        &order.inventory_reserved_at,
                        &order.reservation_id,
                        &order.updated_at,
                    ],
                )
                .await?;
            write_history(client, order_id, &history).await?;
            Outcome::Applied {
                transition: None,
                changed: None,
            }
        }
        Reaction::Ignored { status, history } => {
            write_history(client, order_id, &history).await?;
            Outcome::Ignored { status }
        }
    };
    if let Outcome::Ignored { .. } = outcome {
        let stmt = client
            .prepare_cached(
                "UPDATE processed_events SET outcome = $3 WHERE scope = $1 AND event_key = $2",
            )
            .await?;
        client
            .execute(&stmt, &[&ctx.scope, &ctx.key, &outcome.as_str()])
            .await?;
    }
    Ok(outcome)
}
