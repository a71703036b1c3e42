//! What the events of other services do to an order: `payment.authorized`
//! confirms it, `payment.failed` cancels it, `inventory.reserved` notes the
//! reservation. An event the order's status does not allow is ignored with
//! a note in the history, never refused: the sender cannot undo it.

use super::change::{Change, Changed, DomainError, Step};
use super::order::{HistoryEntry, Order};
use super::status::OrderStatus;
use super::values::OrderId;
use chrono::{DateTime, SubsecRound, Utc};

/// An inbound event, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundEvent {
    /// The payment service holds the money: confirm the order.
    PaymentAuthorized {
        /// The order paid for.
        order_id: OrderId,
        /// The payment's id, if given.
        payment_id: Option<String>,
    },
    /// The payment was refused: cancel the order.
    PaymentFailed {
        /// The order not paid for.
        order_id: OrderId,
        /// Why, if given.
        reason: Option<String>,
    },
    /// The inventory service set the items aside.
    InventoryReserved {
        /// The order whose items are reserved.
        order_id: OrderId,
        /// The reservation's id, if given.
        reservation_id: Option<String>,
        /// When, if given (else: when consumed).
        reserved_at: Option<DateTime<Utc>>,
    },
}

/// What an inbound event does to the order.
#[derive(Debug, Clone, PartialEq)]
pub enum Reaction {
    /// A status change with its event.
    Changed(Box<Changed>),
    /// The inventory reservation recorded on the order (no status change,
    /// no event, no new version), with its history note.
    Reserved {
        /// The order with `reservation_id` and `inventory_reserved_at` set.
        order: Box<Order>,
        /// The note.
        history: HistoryEntry,
    },
    /// The order's status does not allow the event: only a note.
    Ignored {
        /// The status that made it ignored.
        status: OrderStatus,
        /// The note.
        history: HistoryEntry,
    },
}

impl InboundEvent {
    /// The order the event is about.
    pub fn order_id(&self) -> OrderId {
        match self {
            InboundEvent::PaymentAuthorized { order_id, .. }
            | InboundEvent::PaymentFailed { order_id, .. }
            | InboundEvent::InventoryReserved { order_id, .. } => *order_id,
        }
    }

    /// What the event, consumed from `topic` at `now`, does to `order`.
    pub fn react(&self, order: &Order, topic: &str, now: DateTime<Utc>) -> Reaction {
        let change = match self {
            InboundEvent::PaymentAuthorized { payment_id, .. } => Change::Confirm {
                payment_id: payment_id.clone(),
            },
            InboundEvent::PaymentFailed { reason, .. } => Change::Cancel {
                reason: Some(match reason {
                    Some(r) => format!("payment failed: {r}"),
                    None => "payment failed".to_owned(),
                }),
            },
            InboundEvent::InventoryReserved {
                reservation_id,
                reserved_at,
                ..
            } => {
                let mut reserved = order.clone();
                reserved.inventory_reserved_at = Some(reserved_at.unwrap_or(now).trunc_subsecs(6));
                if reservation_id.is_some() {
                    reserved.reservation_id = reservation_id.clone();
                }
                reserved.updated_at = now;
                let reason = match reservation_id {
                    Some(id) => format!("inventory reserved ({id})"),
                    None => "inventory reserved".to_owned(),
                };
                return Reaction::Reserved {
                    history: order.note(reason, topic, now),
                    order: Box::new(reserved),
                };
            }
        };
        let ignored = |reason: String| Reaction::Ignored {
            status: order.status,
            history: order.note(reason, topic, now),
        };
        match order.apply(&change, topic, now) {
            Ok(Step::Changed(changed)) => Reaction::Changed(changed),
            Ok(Step::Unchanged) => ignored(format!(
                "ignored {topic}: order is already {}",
                order.status
            )),
            Err(DomainError::InvalidTransition { current, requested }) => ignored(format!(
                "ignored {topic}: order is {current}, cannot become {requested}"
            )),
            Err(err @ DomainError::StaleVersion { .. }) => {
                ignored(format!("ignored {topic}: {err}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;
    use chrono::TimeZone;

    fn order(status: OrderStatus) -> Order {
        Order {
            reservation_id: Some("r-0".into()),
            ..crate::domain::change::tests::order(status)
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 3, 0, 0, 0).unwrap()
    }

    #[test]
    fn payment_authorized_confirms_a_pending_order() {
        let o = order(Pending);
        let ev = InboundEvent::PaymentAuthorized {
            order_id: o.id,
            payment_id: Some("pay-1".into()),
        };
        let Reaction::Changed(c) = ev.react(&o, "payment.authorized", now()) else {
            panic!("must confirm")
        };
        assert_eq!(c.order.status, Confirmed);
        assert_eq!(c.order.payment_id.as_deref(), Some("pay-1"));
        assert_eq!(c.history.actor, "payment.authorized");
    }

    #[test]
    fn payment_failed_cancels_with_its_reason() {
        for (reason, expected) in [
            (Some("card declined"), "payment failed: card declined"),
            (None, "payment failed"),
        ] {
            let o = order(Confirmed);
            let ev = InboundEvent::PaymentFailed {
                order_id: o.id,
                reason: reason.map(str::to_owned),
            };
            let Reaction::Changed(c) = ev.react(&o, "payment.failed", now()) else {
                panic!("must cancel")
            };
            assert_eq!(c.order.status, Cancelled);
            assert_eq!(c.order.cancellation_reason.as_deref(), Some(expected));
            assert_eq!(c.event.data_value()["previousStatus"], "CONFIRMED");
        }
    }

    #[test]
    fn events_the_status_does_not_allow_are_ignored_with_a_note() {
        let o = order(Shipped);
        let ev = InboundEvent::PaymentFailed {
            order_id: o.id,
            reason: None,
        };
        let Reaction::Ignored { status, history } = ev.react(&o, "payment.failed", now()) else {
            panic!("must be ignored")
        };
        assert_eq!(status, Shipped);
        assert_eq!(
            history.reason.as_deref(),
            Some("ignored payment.failed: order is SHIPPED, cannot become CANCELLED")
        );
        assert_eq!(
            (history.from_status, history.to_status),
            (Some(Shipped), Shipped)
        );

        let o = order(Confirmed);
        let ev = InboundEvent::PaymentAuthorized {
            order_id: o.id,
            payment_id: None,
        };
        let Reaction::Ignored { history, .. } = ev.react(&o, "payment.authorized", now()) else {
            panic!("must be ignored")
        };
        assert_eq!(
            history.reason.as_deref(),
            Some("ignored payment.authorized: order is already CONFIRMED")
        );
    }

    #[test]
    fn inventory_reserved_notes_the_reservation_without_a_new_version() {
        for status in OrderStatus::ALL {
            let o = order(status);
            let ev = InboundEvent::InventoryReserved {
                order_id: o.id,
                reservation_id: None,
                reserved_at: None,
            };
            let Reaction::Reserved { order: r, history } =
                ev.react(&o, "inventory.reserved", now())
            else {
                panic!("must note")
            };
            assert_eq!(r.version, o.version);
            assert_eq!(r.status, status);
            assert_eq!(r.inventory_reserved_at, Some(now()));
            assert_eq!(r.reservation_id.as_deref(), Some("r-0"), "kept");
            assert_eq!(history.reason.as_deref(), Some("inventory reserved"));
        }
    }
}
