//! What happens to an order: placing it, and every status change asked for
//! by a user, an admin or a consumed event. Pure functions: given the order
//! and the change, they return the new order, its history entry and its
//! event; the SQL layer only locks, calls them, and writes what they return.

use super::events::{Event, EventData};
use super::new_order::NewOrder;
use super::order::{HistoryEntry, Order};
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
mod tests {
    use super::*;
    use crate::domain::events::EventType;
    use crate::domain::money::Currency;
    use crate::domain::order::OrderLine;
    use crate::domain::values::Quantity;
    use OrderStatus::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_780_000_000 + secs, 0).unwrap()
    }

    fn order(status: OrderStatus) -> Order {
        Order {
            id: OrderId::generate(),
            user_id: UserId::new("alice"),
            status,
            items: vec![OrderLine {
                product_id: "sku-1".into(),
                quantity: Quantity::new(2).unwrap(),
                unit_price: 500,
                line_total: 1000,
            }],
            total_amount: 1000,
            currency: Currency::parse("EUR").unwrap(),
            version: 3,
            shipping_address: None,
            carrier: None,
            tracking_number: None,
            cancellation_reason: None,
            payment_id: Some("pay-0".into()),
            inventory_reserved_at: None,
            reservation_id: None,
            created_at: at(0),
            updated_at: at(0),
        }
    }

    fn changes() -> Vec<Change> {
        vec![
            Change::Confirm {
                payment_id: Some("pay-1".into()),
            },
            Change::Ship {
                carrier: "DHL".into(),
                tracking_number: "T-1".into(),
            },
            Change::Deliver,
            Change::Cancel {
                reason: Some("changed my mind".into()),
            },
        ]
    }

    #[test]
    fn every_status_and_every_change_follow_the_state_machine() {
        for status in OrderStatus::ALL {
            for change in changes() {
                let to = change.target();
                let result = order(status).apply(&change, "admin:bob", at(60));
                match status.check_transition(to) {
                    TransitionCheck::AlreadyThere => assert_eq!(result, Ok(Step::Unchanged)),
                    TransitionCheck::Refused => assert_eq!(
                        result,
                        Err(DomainError::InvalidTransition {
                            current: status,
                            requested: to
                        }),
                        "{status} -> {to}"
                    ),
                    TransitionCheck::Apply => {
                        let Ok(Step::Changed(c)) = result else {
                            panic!("{status} -> {to} must apply")
                        };
                        assert_eq!(c.order.status, to);
                        assert_eq!(c.order.version, 4);
                        assert_eq!(c.order.updated_at, at(60));
                        assert_eq!(c.from(), Some(status));
                        assert_eq!(c.history.to_status, to);
                        assert_eq!(c.history.actor, "admin:bob");
                        assert_eq!(c.event.event_type, EventType::for_status(to));
                        assert_eq!(c.event.occurred_at, at(60));
                    }
                }
            }
        }
    }

    #[test]
    fn each_change_sets_its_fields_and_its_event_data() {
        let confirmed = order(Pending).apply(&changes()[0], "payment.authorized", at(1));
        let Ok(Step::Changed(c)) = confirmed else {
            panic!("confirm")
        };
        assert_eq!(c.order.payment_id.as_deref(), Some("pay-1"));
        assert_eq!(c.event.data["paymentId"], "pay-1");
        assert_eq!(c.history.reason, None);

        let keep = Change::Confirm { payment_id: None };
        let Ok(Step::Changed(c)) = order(Pending).apply(&keep, "a", at(1)) else {
            panic!("confirm without id")
        };
        assert_eq!(c.order.payment_id.as_deref(), Some("pay-0"), "kept");

        let Ok(Step::Changed(c)) = order(Confirmed).apply(&changes()[1], "a", at(1)) else {
            panic!("ship")
        };
        assert_eq!(c.order.carrier.as_deref(), Some("DHL"));
        assert_eq!(c.order.tracking_number.as_deref(), Some("T-1"));
        assert_eq!(c.event.data["trackingNumber"], "T-1");

        let Ok(Step::Changed(c)) = order(Shipped).apply(&Change::Deliver, "a", at(1)) else {
            panic!("deliver")
        };
        assert_eq!(c.event.data["deliveredAt"], "2026-05-28T20:26:41.000Z");

        let Ok(Step::Changed(c)) = order(Confirmed).apply(&changes()[3], "a", at(1)) else {
            panic!("cancel")
        };
        assert_eq!(
            c.order.cancellation_reason.as_deref(),
            Some("changed my mind")
        );
        assert_eq!(c.history.reason.as_deref(), Some("changed my mind"));
        assert_eq!(c.event.data["previousStatus"], "CONFIRMED");
        assert_eq!(c.event.data["items"][0]["productId"], "sku-1");
    }

    #[test]
    fn placing_starts_at_pending_version_one() {
        let new = crate::domain::NewOrder {
            currency: Currency::parse("EUR").unwrap(),
            lines: order(Pending).items,
            total_amount: 1000,
            shipping_address: crate::domain::ShippingAddress {
                name: "Ada".into(),
                line1: "1 Main St".into(),
                line2: None,
                city: "London".into(),
                state: None,
                postal_code: "N1".into(),
                country: "GB".into(),
            },
        };
        let placed = Order::place(
            OrderId::generate(),
            UserId::new("ada"),
            &new,
            "user:ada",
            at(5),
        );
        assert_eq!(placed.order.status, Pending);
        assert_eq!(placed.order.version, 1);
        assert_eq!(placed.from(), None);
        assert_eq!(placed.history.reason.as_deref(), Some("order placed"));
        assert_eq!(placed.event.event_type, EventType::Placed);
        assert_eq!(placed.event.data["totalAmount"], 1000);
        assert_eq!(placed.event.data["shippingAddress"]["city"], "London");
    }

    fn any_status() -> impl Strategy<Value = OrderStatus> {
        prop::sample::select(OrderStatus::ALL.to_vec())
    }

    fn any_change() -> impl Strategy<Value = Change> {
        prop_oneof![
            proptest::option::of("[a-z0-9-]{1,12}")
                .prop_map(|payment_id| Change::Confirm { payment_id }),
            ("[A-Za-z ]{1,20}", "[A-Z0-9]{1,20}").prop_map(|(carrier, tracking_number)| {
                Change::Ship {
                    carrier,
                    tracking_number,
                }
            }),
            Just(Change::Deliver),
            proptest::option::of(".{0,40}").prop_map(|reason| Change::Cancel { reason }),
        ]
    }

    proptest! {
        /// Any sequence of changes keeps the invariants: the version grows
        /// by one per applied change and never otherwise, a final status
        /// never changes again, and the order's own fields (id, owner,
        /// lines, total) never change.
        #[test]
        fn any_sequence_keeps_the_invariants(
            start in any_status(),
            steps in proptest::collection::vec(any_change(), 0..12),
        ) {
            let first = order(start);
            let mut current = first.clone();
            for (i, change) in steps.iter().enumerate() {
                let before = current.clone();
                match current.apply(change, "p", at(i as i64 + 1)) {
                    Ok(Step::Changed(c)) => {
                        prop_assert!(before.status.can_become(c.order.status));
                        prop_assert!(!before.status.is_final());
                        prop_assert_eq!(c.order.version, before.version + 1);
                        prop_assert_eq!(c.event.event_type, EventType::for_status(c.order.status));
                        current = c.order;
                    }
                    Ok(Step::Unchanged) => prop_assert_eq!(before.status, change.target()),
                    Err(DomainError::InvalidTransition { current: s, requested }) => {
                        prop_assert_eq!(s, before.status);
                        prop_assert!(!s.can_become(requested));
                    }
                }
                prop_assert_eq!(current.id, first.id);
                prop_assert_eq!(&current.user_id, &first.user_id);
                prop_assert_eq!(&current.items, &first.items);
                prop_assert_eq!(current.total_amount, first.total_amount);
            }
        }
    }
}
