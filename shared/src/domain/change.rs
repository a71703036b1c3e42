//! What happens to an order: placing it, and every status change asked for
//! by a user, an admin or a consumed event. Pure functions: given the order
//! and the change, they return the new order, its history entry and its
//! event; the SQL layer only locks, calls them, and writes what they return.

use super::events::{Event, EventData};
use super::new_order::NewOrder;
use super::order::{HistoryEntry, Order};
use super::precondition::IfMatch;
use super::status::{OrderStatus, TransitionCheck};
use super::values::{OrderId, UserId};
use chrono::{DateTime, Utc};

/// A status change asked for, with the data that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// PENDING -> CONFIRMED (payment authorized).
    Confirm {
        /// The payment that confirmed it, if the payment service named one.
        payment_id: Option<String>,
    },
    /// CONFIRMED -> SHIPPED.
    Ship {
        /// Who carries the parcel.
        carrier: String,
        /// The carrier's tracking number.
        tracking_number: String,
    },
    /// SHIPPED -> DELIVERED.
    Deliver,
    /// PENDING or CONFIRMED -> CANCELLED.
    Cancel {
        /// Why, if said.
        reason: Option<String>,
    },
}

impl Change {
    /// The status the change leads to.
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
    /// The order to change.
    pub order_id: OrderId,
    /// The change asked for.
    pub change: Change,
    /// When set, the order must belong to this user (else: not found).
    pub owner: Option<&'a UserId>,
    /// Who asks, for the history (`user:alice`, `admin:bob`, `payment.authorized`).
    pub actor: &'a str,
    /// `If-Match`: the change applies only to these versions.
    pub if_match: Option<&'a IfMatch>,
}

/// Why the domain refuses a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The state machine does not allow the change from the current status.
    #[error("order is {current}; it cannot become {requested}")]
    InvalidTransition {
        /// The order's status now.
        current: OrderStatus,
        /// The status asked for.
        requested: OrderStatus,
    },
    /// `If-Match` named another version than the order's (HTTP 412).
    #[error("order is at version {current_version}, not the one the change was made against")]
    StaleVersion {
        /// The order's version now.
        current_version: i64,
    },
}

/// A change the domain made: the order after it, the history entry and the
/// event that announce it.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    /// The order after the change (version bumped).
    pub order: Order,
    /// The history row to append.
    pub history: HistoryEntry,
    /// The event to put in the outbox, at `order.version`.
    pub event: Event,
}

impl Changed {
    /// The status before the change (none for a placement).
    pub fn from(&self) -> Option<OrderStatus> {
        self.history.from_status
    }
}

/// The answer to a change that the state machine allows.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The order changed.
    Changed(Box<Changed>),
    /// The order already has the requested status: nothing to write or emit.
    Unchanged,
}

impl Order {
    /// A new order placed by `user_id` at `now`: PENDING at version 1, its
    /// first history entry and its `order.placed` event.
    pub fn place(
        id: OrderId,
        user_id: UserId,
        new: &NewOrder,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Changed {
        let order = Order {
            id,
            user_id,
            status: OrderStatus::Pending,
            items: new.lines.clone(),
            total_amount: new.total_amount,
            currency: new.currency.clone(),
            version: 1,
            shipping_address: Some(new.shipping_address.clone()),
            carrier: None,
            tracking_number: None,
            cancellation_reason: None,
            payment_id: None,
            inventory_reserved_at: None,
            reservation_id: None,
            created_at: now,
            updated_at: now,
        };
        let event = EventData::Placed {
            items: &order.items,
            total_amount: order.total_amount,
            currency: order.currency.as_str(),
            shipping_address: order.shipping_address.as_ref(),
        }
        .at(now);
        let history = HistoryEntry {
            from_status: None,
            to_status: OrderStatus::Pending,
            reason: Some("order placed".to_owned()),
            actor: actor.to_owned(),
            at: now,
        };
        Changed {
            order,
            history,
            event,
        }
    }

    /// Applies a transition: its `If-Match` first (a stale version is
    /// refused before the state machine is asked, as HTTP orders it), then
    /// [`Order::apply`].
    pub fn apply_transition(
        &self,
        t: &Transition<'_>,
        now: DateTime<Utc>,
    ) -> Result<Step, DomainError> {
        if let Some(condition) = t.if_match
            && !condition.allows(self.version)
        {
            return Err(DomainError::StaleVersion {
                current_version: self.version,
            });
        }
        self.apply(&t.change, t.actor, now)
    }

    /// Applies `change` asked for by `actor` at `now`: the state machine
    /// decides; the new order has its version bumped and the change's
    /// fields set, and the event says what changed.
    pub fn apply(
        &self,
        change: &Change,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Step, DomainError> {
        let from = self.status;
        let to = change.target();
        match from.check_transition(to) {
            TransitionCheck::AlreadyThere => return Ok(Step::Unchanged),
            TransitionCheck::Refused => {
                return Err(DomainError::InvalidTransition {
                    current: from,
                    requested: to,
                });
            }
            TransitionCheck::Apply => {}
        }
        let mut order = self.clone();
        order.status = to;
        order.version += 1;
        order.updated_at = now;
        let reason = match change {
            Change::Confirm { payment_id } => {
                if payment_id.is_some() {
                    order.payment_id = payment_id.clone();
                }
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
        let event = match change {
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
        }
        .at(now);
        let history = HistoryEntry {
            from_status: Some(from),
            to_status: to,
            reason,
            actor: actor.to_owned(),
            at: now,
        };
        Ok(Step::Changed(Box::new(Changed {
            order,
            history,
            event,
        })))
    }

    /// A history entry that changes nothing but says why (a consumed event
    /// that was ignored, an inventory reservation).
    pub fn note(&self, reason: String, actor: &str, now: DateTime<Utc>) -> HistoryEntry {
        HistoryEntry {
            from_status: Some(self.status),
            to_status: self.status,
            reason: Some(reason),
            actor: actor.to_owned(),
            at: now,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
