//! The JSON shapes of the REST API (camelCase), and their conversion to and
//! from the domain types in `order_shared`.

use super::json_body::{rfc3339, rfc3339_opt};
use order_shared::domain::{AddressInput, ItemInput, ShippingAddress};
use order_shared::domain::{HistoryEntry, Order, OrderLine, OrderStatus};
use poem_openapi::{Enum, Object, Union};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Order status.
#[derive(Enum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

impl From<OrderStatus> for Status {
    fn from(s: OrderStatus) -> Self {
        match s {
            OrderStatus::Pending => Status::Pending,
            OrderStatus::Confirmed => Status::Confirmed,
            OrderStatus::Shipped => Status::Shipped,
            OrderStatus::Delivered => Status::Delivered,
            OrderStatus::Cancelled => Status::Cancelled,
        }
    }
}

impl From<Status> for OrderStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Pending => OrderStatus::Pending,
            Status::Confirmed => OrderStatus::Confirmed,
            Status::Shipped => OrderStatus::Shipped,
            Status::Delivered => OrderStatus::Delivered,
            Status::Cancelled => OrderStatus::Cancelled,
        }
    }
}

// The limits below are the domain's (`order_shared::domain::new_order`,
// `upstream::http::check_path_id`), written as schema validators so that
// the document states them; a test compares both. Request bodies are read
// with `Lenient`, so the handler reports every broken limit at once.

/// One line of a create request.
#[derive(Object, Deserialize, Debug, Clone)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ItemRequest {
    /// 1..64 characters, no surrounding spaces, not `.` or `..`, no `/`,
    /// `\`, or control characters. Lines of one product are merged
    /// (quantities added, at most 10000) and must agree on `unitPrice`.
    #[oai(validator(
        min_length = 1,
        max_length = 64,
        pattern = "^(?:[^\\s./\\\\\\u0000-\\u001f\\u007f-\\u009f]|[^\\s./\\\\\\u0000-\\u001f\\u007f-\\u009f][^\\s/\\\\\\u0000-\\u001f\\u007f-\\u009f]|\\.[^\\s./\\\\\\u0000-\\u001f\\u007f-\\u009f]|[^\\s/\\\\\\u0000-\\u001f\\u007f-\\u009f][^/\\\\\\u0000-\\u001f\\u007f-\\u009f]+[^\\s/\\\\\\u0000-\\u001f\\u007f-\\u009f])$"
    ))]
    pub product_id: String,
    /// 1..10000.
    #[oai(validator(minimum(value = "1"), maximum(value = "10000")))]
    pub quantity: i64,
    /// Price of one unit in the currency's minor unit (cents), 0..10^9.
    #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
    pub unit_price: i64,
}

/// A postal address to ship to. Text fields hold no control characters;
/// the required ones at least one non-space character.
#[derive(Object, Deserialize, Debug, Clone, Default)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase", default)]
pub struct AddressRequest {
    /// 1..200 characters.
    #[oai(validator(
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    ))]
    pub name: String,
    /// 1..200 characters.
    #[oai(validator(
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    ))]
    pub line1: String,
    /// Up to 200 characters; null, empty or blank: none.
    #[oai(
        nullable,
        validator(max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")
    )]
    pub line2: Option<String>,
    /// 1..200 characters.
    #[oai(validator(
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    ))]
    pub city: String,
    /// Up to 200 characters; null, empty or blank: none.
    #[oai(
        nullable,
        validator(max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")
    )]
    pub state: Option<String>,
    /// 1..200 characters.
    #[oai(validator(
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    ))]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 in upper case, e.g. `US`.
    #[oai(validator(pattern = "^[A-Z]{2}$"))]
    pub country: String,
}

/// A postal address.
#[derive(Object, Serialize, Debug, Clone, Default)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `US`.
    pub country: String,
}

impl From<AddressRequest> for AddressInput {
    fn from(a: AddressRequest) -> Self {
        AddressInput {
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            state: a.state,
            postal_code: a.postal_code,
            country: a.country,
        }
    }
}

impl From<ShippingAddress> for Address {
    fn from(a: ShippingAddress) -> Self {
        Address {
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            state: a.state,
            postal_code: a.postal_code,
            country: a.country,
        }
    }
}

/// A create request as read: `items` or `cartId` (see [`CreateOrderBody`]
/// for what the document states).
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderRequest {
    pub currency: Option<String>,
    pub items: Option<Vec<ItemRequest>>,
    pub cart_id: Option<String>,
    pub shipping_address: Option<AddressRequest>,
}

/// Create an order from its lines.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct ItemsOrder {
    /// ISO 4217 code in upper case, e.g. `USD`.
    #[oai(validator(pattern = "^[A-Z]{3}$"))]
    pub currency: String,
    /// 1..100 lines.
    #[oai(validator(min_items = 1, max_items = 100))]
    pub items: Vec<ItemRequest>,
    pub shipping_address: AddressRequest,
}

/// Check out the caller's cart of the cart service.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct CartOrder {
    /// The cart's id: 1..64 characters, not `.` or `..`, no `/`, `\` or
    /// control characters.
    #[oai(validator(
        min_length = 1,
        max_length = 64,
        pattern = "^(?:[^./\\\\\\u0000-\\u001f\\u007f-\\u009f]|[^./\\\\\\u0000-\\u001f\\u007f-\\u009f][^/\\\\\\u0000-\\u001f\\u007f-\\u009f]|\\.[^./\\\\\\u0000-\\u001f\\u007f-\\u009f]|[^/\\\\\\u0000-\\u001f\\u007f-\\u009f]{3,})$"
    ))]
    pub cart_id: String,
    /// ISO 4217 code; by default (absent or null) the cart's.
    #[oai(nullable, validator(pattern = "^[A-Z]{3}$"))]
    pub currency: Option<String>,
    pub shipping_address: AddressRequest,
}

/// Create an order: either its `items` or a `cartId`, never both.
#[derive(Union, Debug, Clone)]
#[oai(one_of)]
pub enum CreateOrderBody {
    Items(ItemsOrder),
    Cart(CartOrder),
}

impl From<ItemRequest> for ItemInput {
    fn from(i: ItemRequest) -> Self {
        ItemInput {
            product_id: i.product_id,
            quantity: i.quantity,
            unit_price: i.unit_price,
        }
    }
}

/// A line of an order.
#[derive(Object, Serialize, Debug, Clone)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub product_id: String,
    pub quantity: i32,
    pub unit_price: i64,
    pub line_total: i64,
}

impl From<OrderLine> for OrderItem {
    fn from(l: OrderLine) -> Self {
        OrderItem {
            product_id: l.product_id,
            quantity: l.quantity.get(),
            unit_price: l.unit_price,
            line_total: l.line_total,
        }
    }
}

// Written with serde (`JsonBody`); a test holds that equal to
// poem-openapi's own serialization.
/// An order.
#[derive(Object, Serialize, Debug, Clone)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct OrderBody {
    pub id: Uuid,
    pub user_id: String,
    pub status: Status,
    pub items: Vec<OrderItem>,
    /// Sum of the line totals, in minor units.
    pub total_amount: i64,
    pub currency: String,
    /// 1 when placed, +1 per emitted event.
    pub version: i64,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: chrono::DateTime<chrono::Utc>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_opt"
    )]
    pub inventory_reserved_at: Option<chrono::DateTime<chrono::Utc>>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
}

impl From<Order> for OrderBody {
    fn from(o: Order) -> Self {
        OrderBody {
            id: o.id.into(),
            user_id: o.user_id.to_string(),
            status: o.status.into(),
            items: o.items.into_iter().map(OrderItem::from).collect(),
            total_amount: o.total_amount,
            currency: o.currency.to_string(),
            version: o.version,
            created_at: o.created_at,
            updated_at: o.updated_at,
            shipping_address: o.shipping_address.map(Address::from),
            carrier: o.carrier,
            tracking_number: o.tracking_number,
            cancellation_reason: o.cancellation_reason,
            inventory_reserved_at: o.inventory_reserved_at,
            payment_id: o.payment_id,
        }
    }
}

/// A page of orders, newest first.
#[derive(Object, Serialize, Debug, Clone)]
#[oai(rename_all = "camelCase", rename = "OrderPage")]
#[serde(rename_all = "camelCase")]
pub struct OrderPageBody {
    pub items: Vec<OrderBody>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One status change.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct HistoryItem {
    /// Absent for the creation.
    #[oai(skip_serializing_if_is_none)]
    pub from_status: Option<Status>,
    pub to_status: Status,
    #[oai(skip_serializing_if_is_none)]
    pub reason: Option<String>,
    /// `user:ID`, `admin:ID` or the event that caused it.
    pub actor: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

impl From<HistoryEntry> for HistoryItem {
    fn from(h: HistoryEntry) -> Self {
        HistoryItem {
            from_status: h.from_status.map(Status::from),
            to_status: h.to_status.into(),
            reason: h.reason,
            actor: h.actor,
            at: h.at,
        }
    }
}

/// Body of PATCH /cancel (optional).
#[derive(Object, Deserialize, Debug, Clone, Default)]
pub struct CancelRequest {
    /// Up to 500 characters; line breaks and tabs are the only control
    /// characters allowed. Null, empty or blank: no reason.
    #[oai(
        nullable,
        validator(
            max_length = 500,
            pattern = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"
        )
    )]
    pub reason: Option<String>,
}

/// Body of PATCH /ship.
#[derive(Object, Deserialize, Debug, Clone)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ShipRequest {
    /// 1..100 characters, not blank, no control characters.
    #[oai(validator(
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    ))]
    pub carrier: String,
    /// 1..100 characters, not blank, no control characters.
    #[oai(validator(
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    ))]
    pub tracking_number: String,
}
