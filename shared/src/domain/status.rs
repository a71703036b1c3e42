//! The order state machine: which status may follow which, and nothing else.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The lifecycle status of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Placed, waiting for payment.
    Pending,
    /// Paid: to be shipped.
    Confirmed,
    /// Handed to the carrier.
    Shipped,
    /// Arrived. Final.
    Delivered,
    /// Cancelled by the user, an admin or a failed payment. Final.
    Cancelled,
}

/// What asking for a status change amounts to, given the current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionCheck {
    /// The change is allowed and must be applied (and emitted).
    Apply,
    /// The order is already in the requested status: answer as success, emit nothing.
    AlreadyThere,
    /// The change is not allowed from the current status.
    Refused,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    /// The status as stored and sent (`PENDING`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }

    /// DELIVERED and CANCELLED never change again.
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Delivered | OrderStatus::Cancelled)
    }

    /// The allowed edges of the state machine (DESIGN section 2).
    pub fn can_become(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (Pending, Confirmed)
                | (Pending, Cancelled)
                | (Confirmed, Shipped)
                | (Confirmed, Cancelled)
                | (Shipped, Delivered)
        )
    }

    /// Classifies a requested change from `self` to `to`.
    pub fn check_transition(self, to: OrderStatus) -> TransitionCheck {
        if self == to {
            TransitionCheck::AlreadyThere
        } else if self.can_become(to) {
            TransitionCheck::Apply
        } else {
            TransitionCheck::Refused
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of the five statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown order status {0:?}; expected one of PENDING, CONFIRMED, SHIPPED, DELIVERED, CANCELLED"
)]
pub struct UnknownStatus(pub String);

impl FromStr for OrderStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    #[test]
    fn allowed_edges_are_exactly_the_designed_ones() {
        let allowed: Vec<_> = OrderStatus::ALL
            .into_iter()
            .flat_map(|from| OrderStatus::ALL.into_iter().map(move |to| (from, to)))
            .filter(|(from, to)| from.can_become(*to))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Pending, Confirmed),
                (Pending, Cancelled),
                (Confirmed, Shipped),
                (Confirmed, Cancelled),
                (Shipped, Delivered),
            ]
        );
    }

    #[test]
    fn final_states_have_no_way_out() {
        for from in [Delivered, Cancelled] {
            assert!(from.is_final());
            for to in OrderStatus::ALL {
                assert!(!from.can_become(to), "{from} -> {to} must be refused");
            }
        }
    }

    #[test]
    fn asking_for_the_current_status_is_a_no_op() {
        for status in OrderStatus::ALL {
            assert_eq!(
                status.check_transition(status),
                TransitionCheck::AlreadyThere
            );
        }
        assert_eq!(
            Shipped.check_transition(Cancelled),
            TransitionCheck::Refused
        );
        assert_eq!(Pending.check_transition(Confirmed), TransitionCheck::Apply);
    }

    #[test]
    fn status_text_round_trips() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
        }
        assert!("pending".parse::<OrderStatus>().is_err());
    }
}
