//! A status change asked through the API: one transaction, then the
//! transition counted and logged.

use crate::auth::Caller;
use crate::problem::ApiError;
use deadpool_postgres::Pool;
use order_shared::db::Emit;
use order_shared::db::orders::{TransitionOutcome, transition_order};
use order_shared::domain::{Change, IfMatch, Order, OrderId, Transition};
use order_shared::telemetry::count_transition;

/// Applies `change` to order `id` for `caller` in one transaction, if the
/// order's version satisfies `if_match`; answers the order as it is
/// afterwards.
pub async fn apply(
    pool: &Pool,
    emit: &Emit<'_>,
    caller: &Caller,
    id: OrderId,
    change: Change,
    if_match: Option<&IfMatch>,
) -> Result<Order, ApiError> {
    let actor = caller.actor();
    let transition = Transition {
        order_id: id,
        change,
        owner: caller.owner(),
        actor: &actor,
        if_match,
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let outcome = transition_order(&tx, &transition, emit).await?;
    tx.commit().await?;
    match outcome {
        TransitionOutcome::Applied { order, from } => {
            count_transition(from, order.status);
            tracing::info!(order_id = %order.id, from = %from, to = %order.status,
                version = order.version, actor = %actor, "Order status changed.");
            Ok(order)
        }
        TransitionOutcome::Unchanged(order) => Ok(order),
        TransitionOutcome::Refused(refused) => Err(refused.into()),
    }
}
