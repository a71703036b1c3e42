//! The consumer's inbox: applying an inbound event exactly once in effect.
//! One transaction records the idempotency key in `processed_events` (a
//! conflict means "already applied") and applies the change with its
//! history and outbox rows; the caller stores the Kafka offset only after
//! the commit.

use super::GenericClient;
use super::orders::{Change, Transition, TransitionOutcome, transition_order};
use crate::StoreError;
use crate::domain::OrderStatus;
use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

/// An inbound event, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundEvent {
    PaymentAuthorized {
        order_id: Uuid,
        payment_id: Option<String>,
    },
    PaymentFailed {
        order_id: Uuid,
        reason: Option<String>,
    },
    InventoryReserved {
        order_id: Uuid,
        reservation_id: Option<String>,
        reserved_at: Option<DateTime<Utc>>,
    },
}

impl InboundEvent {
    pub fn order_id(&self) -> Uuid {
        match self {
            InboundEvent::PaymentAuthorized { order_id, .. }
            | InboundEvent::PaymentFailed { order_id, .. }
            | InboundEvent::InventoryReserved { order_id, .. } => *order_id,
        }
    }
}

/// What consuming one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The change was applied (and, for payments, an event emitted).
    Applied,
    /// The key was seen before: nothing done.
    Duplicate,
    /// Valid, but the order's status (`status`) does not allow it: noted
    /// in the history, nothing emitted.
    Ignored { status: OrderStatus },
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
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
    pub traceparent: Option<&'a str>,
    pub shards: u32,
    pub notify: bool,
}

async fn note_history(
    client: &impl GenericClient,
    order_id: Uuid,
    reason: &str,
    actor: &str,
) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, created_at) \
             SELECT id, status, status, $2, $3, now() FROM orders WHERE id = $1",
        )
        .await?;
    client.execute(&stmt, &[&order_id, &reason, &actor]).await?;
    Ok(())
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
    if client
        .execute(&insert, &[&ctx.scope, &ctx.key, &ctx.topic, &order_id])
        .await?
        == 0
    {
        return Ok(Outcome::Duplicate);
    }
    let outcome = match event {
        InboundEvent::InventoryReserved {
            reservation_id,
            reserved_at,
            ..
        } => {
            let at = reserved_at.unwrap_or_else(Utc::now).trunc_subsecs(6);
            let stmt = client
                .prepare_cached(
                    "UPDATE orders SET inventory_reserved_at = $2, \
                     reservation_id = coalesce($3, reservation_id), updated_at = now() WHERE id = $1",
                )
                .await?;
            if client
                .execute(&stmt, &[&order_id, &at, reservation_id])
                .await?
                == 0
            {
                return Err(StoreError::NotFound);
            }
            let reason = match reservation_id {
                Some(id) => format!("inventory reserved ({id})"),
                None => "inventory reserved".to_owned(),
            };
            note_history(client, order_id, &reason, ctx.topic).await?;
            Outcome::Applied
        }
        InboundEvent::PaymentAuthorized { payment_id, .. } => {
            transition(
                client,
                ctx,
                order_id,
                Change::Confirm {
                    payment_id: payment_id.clone(),
                },
            )
            .await?
        }
        InboundEvent::PaymentFailed { reason, .. } => {
            let reason = reason
                .clone()
                .map(|r| format!("payment failed: {r}"))
                .or_else(|| Some("payment failed".to_owned()));
            transition(client, ctx, order_id, Change::Cancel { reason }).await?
        }
    };
    if outcome != Outcome::Applied {
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

async fn transition(
    client: &impl GenericClient,
    ctx: &InboundContext<'_>,
    order_id: Uuid,
    change: Change,
) -> Result<Outcome, StoreError> {
    let target = change.target();
    let t = Transition {
        order_id,
        change,
        owner: None,
        actor: ctx.topic,
        traceparent: ctx.traceparent,
        shards: ctx.shards,
        notify: ctx.notify,
    };
    match transition_order(client, &t).await {
        Ok(TransitionOutcome::Applied { .. }) => Ok(Outcome::Applied),
        Ok(TransitionOutcome::Unchanged(order)) => {
            let note = format!("ignored {}: order is already {}", ctx.topic, order.status);
            note_history(client, order_id, &note, ctx.topic).await?;
            Ok(Outcome::Ignored {
                status: order.status,
            })
        }
        Err(StoreError::InvalidTransition { current, .. }) => {
            let note = format!(
                "ignored {}: order is {current}, cannot become {target}",
                ctx.topic
            );
            note_history(client, order_id, &note, ctx.topic).await?;
            Ok(Outcome::Ignored { status: current })
        }
        Err(other) => Err(other),
    }
}

/// Deletes inbox rows older than `older_than`, at most `batch` per call.
pub async fn purge_processed_events(
    client: &impl GenericClient,
    older_than: std::time::Duration,
    batch: i64,
) -> Result<u64, StoreError> {
    let stmt = client
        .prepare_cached(
            "DELETE FROM processed_events WHERE (scope, event_key) IN (SELECT scope, event_key FROM processed_events \
             WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2)",
        )
        .await?;
    Ok(client
        .execute(&stmt, &[&(older_than.as_secs_f64()), &batch])
        .await?)
}
