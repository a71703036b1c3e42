//! Money in integer minor units (cents) with checked arithmetic, and ISO 4217
//! currency codes. Totals are computed here once, never with floats.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest accepted unit price, in minor units (10^9, i.e. 10 million USD).
pub const MAX_UNIT_PRICE: i64 = 1_000_000_000;

/// A three-letter ISO 4217 currency code, upper case (`USD`, `EUR`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Currency(String);

impl schemars::JsonSchema for Currency {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Currency".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "ISO 4217 code, upper case.",
            "type": "string",
            "pattern": "^[A-Z]{3}$",
        })
    }
}

impl Currency {
    /// Accepts exactly three ASCII upper-case letters.
    pub fn parse(code: &str) -> Result<Self, &'static str> {
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(code.to_owned()))
        } else {
            Err("must be a three-letter ISO 4217 code in upper case, e.g. USD")
        }
    }

    /// The code, e.g. `USD`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `unit_price * quantity`, or `None` when it would overflow.
pub fn line_total(unit_price: i64, quantity: i32) -> Option<i64> {
    unit_price.checked_mul(i64::from(quantity))
}

/// The sum of the line totals, or `None` when it would overflow.
pub fn order_total(line_totals: impl IntoIterator<Item = i64>) -> Option<i64> {
    line_totals
        .into_iter()
        .try_fold(0_i64, |sum, line| sum.checked_add(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn currency_must_be_three_upper_case_letters() {
        assert!(Currency::parse("USD").is_ok());
        for bad in ["usd", "US", "USDD", "U$D", "", "ÜSD"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn overflow_is_reported_not_wrapped() {
        assert_eq!(line_total(i64::MAX, 2), None);
        assert_eq!(order_total([i64::MAX, 1]), None);
        assert_eq!(order_total([]), Some(0));
    }

    proptest! {
        #[test]
        fn totals_within_limits_never_overflow(
            lines in proptest::collection::vec((0..=MAX_UNIT_PRICE, 1..=10_000_i32), 1..=100)
        ) {
            let totals: Vec<i64> = lines
                .iter()
                .map(|(price, qty)| line_total(*price, *qty).expect("line within limits"))
                .collect();
            let total = order_total(totals.iter().copied()).expect("order within limits");
            let expected: i128 = lines.iter().map(|(p, q)| i128::from(*p) * i128::from(*q)).sum();
            prop_assert_eq!(i128::from(total), expected);
        }

        #[test]
        fn checked_arithmetic_matches_wide_arithmetic(price in any::<i64>(), qty in any::<i32>()) {
            let wide = i128::from(price) * i128::from(qty);
            match line_total(price, qty) {
                Some(v) => prop_assert_eq!(i128::from(v), wide),
                None => prop_assert!(wide > i128::from(i64::MAX) || wide < i128::from(i64::MIN)),
            }
        }
    }
}
