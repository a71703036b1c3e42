//! `Order::apply` and `Order::place` without a database: every status
//! with every change, each change's fields and event, and any sequence.

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

fn new_order() -> NewOrder {
    NewOrder {
        currency: Currency::parse("EUR").unwrap(),
        lines: vec![OrderLine {
            product_id: "sku-1".into(),
            quantity: Quantity::new(2).unwrap(),
            unit_price: 500,
            line_total: 1000,
        }],
        total_amount: 1000,
        shipping_address: crate::domain::order::ShippingAddress {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "London".into(),
            state: None,
            postal_code: "N1".into(),
            country: "GB".into(),
        },
    }
}

/// An order of alice's in `status` at version 3, paid with `pay-0` (a
/// fixture for the domain's tests).
pub(crate) fn order(status: OrderStatus) -> Order {
    let placed = Order::place(
        OrderId::generate(),
        UserId::new("alice"),
        &new_order(),
        "user:alice",
        at(0),
    );
    Order {
        status,
        version: 3,
        payment_id: Some("pay-0".into()),
        ..placed.order
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
    assert_eq!(c.event.data_value()["paymentId"], "pay-1");
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
    assert_eq!(c.event.data_value()["trackingNumber"], "T-1");

    let Ok(Step::Changed(c)) = order(Shipped).apply(&Change::Deliver, "a", at(1)) else {
        panic!("deliver")
    };
    assert_eq!(
        c.event.data_value()["deliveredAt"],
        "2026-05-28T20:26:41.000Z"
    );

    let Ok(Step::Changed(c)) = order(Confirmed).apply(&changes()[3], "a", at(1)) else {
        panic!("cancel")
    };
    assert_eq!(
        c.order.cancellation_reason.as_deref(),
        Some("changed my mind")
    );
    assert_eq!(c.history.reason.as_deref(), Some("changed my mind"));
    assert_eq!(c.event.data_value()["previousStatus"], "CONFIRMED");
    assert_eq!(c.event.data_value()["items"][0]["productId"], "sku-1");
}

#[test]
fn placing_starts_at_pending_version_one() {
    let new = new_order();
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
    assert_eq!(placed.event.data_value()["totalAmount"], 1000);
    assert_eq!(
        placed.event.data_value()["shippingAddress"]["city"],
        "London"
    );
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
                Err(DomainError::StaleVersion { .. }) => prop_assert!(false, "apply has no precondition"),
            }
            prop_assert_eq!(current.id, first.id);
            prop_assert_eq!(&current.user_id, &first.user_id);
            prop_assert_eq!(&current.items, &first.items);
            prop_assert_eq!(current.total_amount, first.total_amount);
        }
    }
}
