//! The read model of an order, as stored: its lines, address and history.

use super::money::Currency;
use super::status::OrderStatus;
use super::values::{OrderId, Quantity, UserId};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A validated order line; `line_total` is computed, never taken from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// The product's id in the product service.
    pub product_id: String,
    /// Units ordered.
    pub quantity: Quantity,
    /// Price of one unit in minor units.
    pub unit_price: i64,
    /// `unit_price * quantity`.
    pub line_total: i64,
}

/// A validated shipping address (stored as JSON on the order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShippingAddress {
    /// The addressee.
    pub name: String,
    /// Street and number.
    pub line1: String,
    /// Anything else (flat, floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City or town.
    pub city: String,
    /// State or region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 code, upper case.
    pub country: String,
}

/// An order as stored, with its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// The order's id.
    pub id: OrderId,
    /// Who placed it (and may see it).
    pub user_id: UserId,
    /// Where it is in its lifecycle.
    pub status: OrderStatus,
    /// Its lines, in the order they were sent.
    pub items: Vec<OrderLine>,
    /// The sum of the line totals, in minor units.
    pub total_amount: i64,
    /// The currency of every amount.
    pub currency: Currency,
    /// 1 at placement, +1 per status change: the version of its last event.
    pub version: i64,
    /// Where it goes.
    pub shipping_address: Option<ShippingAddress>,
    /// Set when shipped.
    pub carrier: Option<String>,
    /// Set when shipped.
    pub tracking_number: Option<String>,
    /// Set when cancelled with a reason.
    pub cancellation_reason: Option<String>,
    /// Set by `payment.authorized`.
    pub payment_id: Option<String>,
    /// Set by `inventory.reserved`.
    pub inventory_reserved_at: Option<DateTime<Utc>>,
    /// Set by `inventory.reserved`.
    pub reservation_id: Option<String>,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// One row of an order's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The status before (none at placement).
    pub from_status: Option<OrderStatus>,
    /// The status after (the same as before for a note).
    pub to_status: OrderStatus,
    /// Why, for a human.
    pub reason: Option<String>,
    /// Who: `user:alice`, `admin:bob` or the topic of a consumed event.
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
}
