//! Small types that say what they hold: an order's id, a user's id and a
//! line's quantity. Each is checked once, where it is made.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Largest quantity of one product in one order.
pub const MAX_QUANTITY: i64 = 10_000;

/// The id of an order: a UUIDv7, so that id order is creation order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    /// A new id for an order placed now (UUIDv7: time-ordered).
    pub fn generate() -> Self {
        OrderId(Uuid::now_v7())
    }

    /// The id as a UUID, e.g. for a query parameter.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for OrderId {
    fn from(id: Uuid) -> Self {
        OrderId(id)
    }
}

impl From<OrderId> for Uuid {
    fn from(id: OrderId) -> Self {
        id.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for OrderId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(OrderId)
    }
}

/// The id of a user: the `sub` claim of the token that placed the order.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Wraps a user id as the identity provider issued it.
    pub fn new(id: impl Into<String>) -> Self {
        UserId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many units of one product a line holds: 1..=[`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i32")]
pub struct Quantity(i32);

impl JsonSchema for Quantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Units of one product, 1..10000.",
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_QUANTITY,
        })
    }
}

/// The number is outside 1..=[`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be between 1 and {MAX_QUANTITY}")]
pub struct BadQuantity;

impl Quantity {
    /// Accepts 1..=[`MAX_QUANTITY`].
    pub fn new(units: i64) -> Result<Self, BadQuantity> {
        if (1..=MAX_QUANTITY).contains(&units) {
            i32::try_from(units).map(Quantity).map_err(|_| BadQuantity)
        } else {
            Err(BadQuantity)
        }
    }

    /// The number of units.
    pub fn get(self) -> i32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = BadQuantity;

    fn try_from(units: i64) -> Result<Self, Self::Error> {
        Quantity::new(units)
    }
}

impl From<Quantity> for i32 {
    fn from(q: Quantity) -> Self {
        q.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_limits_are_inclusive() {
        assert_eq!(Quantity::new(1).map(Quantity::get), Ok(1));
        assert_eq!(Quantity::new(MAX_QUANTITY).map(Quantity::get), Ok(10_000));
        for bad in [0, -1, MAX_QUANTITY + 1, i64::MAX] {
            assert_eq!(Quantity::new(bad), Err(BadQuantity), "{bad}");
        }
    }

    #[test]
    fn ids_serialise_as_their_text() {
        let id: OrderId = "0190a6f0-0000-7000-8000-000000000001".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"0190a6f0-0000-7000-8000-000000000001\""
        );
        assert_eq!(
            serde_json::to_string(&UserId::new("alice")).unwrap(),
            "\"alice\""
        );
        let q: Quantity = serde_json::from_str("3").unwrap();
        assert_eq!(q.get(), 3);
        assert!(serde_json::from_str::<Quantity>("0").is_err());
    }

    #[test]
    fn generated_ids_are_time_ordered() {
        let a = OrderId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(OrderId::generate() > a);
    }
}
