//! The JSON of every Kafka record value the service writes or reads, as
//! types. The events' `data` is serialized through these types, and the
//! AsyncAPI document ([`crate::asyncapi`]) takes its JSON Schemas from the
//! same types, so the contract cannot drift from the code.

use super::order::{Order, OrderLine, ShippingAddress};
use super::status::OrderStatus;
use super::values::{OrderId, UserId};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The envelope of every event the service emits; `data` depends on the
/// event type.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<'a, D> {
    /// Unique per event (UUIDv7); also the `ce_id` header. Deduplicate by it.
    pub event_id: Uuid,
    /// The event type, also the topic before any prefix (`order.placed`).
    pub event_type: &'a str,
    /// When it happened, RFC 3339 UTC with milliseconds.
    #[schemars(with = "DateTime<Utc>")]
    pub occurred_at: String,
    /// The order; also the record key and the `ce_subject` header.
    pub order_id: OrderId,
    /// Who placed the order.
    pub user_id: &'a UserId,
    /// The order's version after this event: 1 at placement, +1 per event,
    /// without gaps. `order.snapshot` restates the current version.
    #[schemars(range(min = 1))]
    pub version: i64,
    /// What happened; see each event type.
    pub data: D,
}

/// `order.placed`: the whole order as placed.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacedData<'a> {
    /// The lines, in the order they were sent (one per product).
    pub items: &'a [OrderLine],
    /// The sum of the line totals, in minor units.
    pub total_amount: i64,
    /// ISO 4217 code of every amount.
    #[schemars(regex(pattern = "^[A-Z]{3}$"))]
    pub currency: &'a str,
    /// Where it goes.
    pub shipping_address: Option<&'a ShippingAddress>,
}

/// `order.confirmed`: the payment that confirmed it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmedData<'a> {
    /// The payment service's id, when it sent one.
    pub payment_id: Option<&'a str>,
}

/// `order.shipped`: the parcel.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShippedData<'a> {
    /// Who carries it.
    pub carrier: &'a str,
    /// The carrier's tracking number.
    pub tracking_number: &'a str,
}

/// `order.delivered`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveredData {
    /// When, RFC 3339 UTC with milliseconds.
    #[schemars(with = "DateTime<Utc>")]
    pub delivered_at: String,
}

/// `order.cancelled`: what inventory must release.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelledData<'a> {
    /// Why, when said.
    pub reason: Option<&'a str>,
    /// The status it left (PENDING or CONFIRMED).
    pub previous_status: OrderStatus,
    /// The lines whose stock to release.
    pub items: &'a [OrderLine],
}

/// `order.snapshot`: the whole order as it is now.
pub type SnapshotData<'a> = &'a Order;

/// `payment.authorized` as the consumer reads it. Each field may also sit
/// under a `data` object (CloudEvents structured payloads); ids may be
/// numbers. The idempotency key is the `ce_id` header, else `eventId`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentAuthorized {
    /// The key when there is no `ce_id` header.
    #[schemars(length(max = 200))]
    pub event_id: Option<String>,
    /// The order to confirm.
    pub order_id: Uuid,
    /// Recorded on the order and in `order.confirmed`.
    #[schemars(length(max = 200))]
    pub payment_id: Option<String>,
}

/// `payment.failed`: cancels a PENDING or CONFIRMED order.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailed {
    /// The key when there is no `ce_id` header.
    #[schemars(length(max = 200))]
    pub event_id: Option<String>,
    /// The order to cancel.
    pub order_id: Uuid,
    /// Kept (first 500 characters) as the cancellation reason.
    pub reason: Option<String>,
}

/// `inventory.reserved`: recorded on the order; no status change.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryReserved {
    /// The key when there is no `ce_id` header.
    #[schemars(length(max = 200))]
    pub event_id: Option<String>,
    /// The order the stock is held for.
    pub order_id: Uuid,
    /// The inventory service's id.
    #[schemars(length(max = 200))]
    pub reservation_id: Option<String>,
    /// When the stock was reserved (RFC 3339).
    pub reserved_at: Option<DateTime<Utc>>,
}

/// The record headers of every event the service emits: CloudEvents 1.0
/// binary mode, and the W3C trace context of the request that caused it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OutboundHeaders {
    /// Always `1.0`.
    #[schemars(extend("const" = "1.0"))]
    pub ce_specversion: String,
    /// The event id (`eventId`).
    pub ce_id: Uuid,
    /// The event type (`eventType`).
    pub ce_type: String,
    /// Always `/order-service`.
    #[schemars(extend("const" = "/order-service"))]
    pub ce_source: String,
    /// The order id (`orderId`, the record key).
    pub ce_subject: Uuid,
    /// When the event was written.
    pub ce_time: DateTime<Utc>,
    /// Always `application/json`.
    #[serde(rename = "content-type")]
    #[schemars(extend("const" = "application/json"))]
    pub content_type: String,
    /// W3C trace context, when the request that caused the event had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// The record headers the consumer reads; all optional.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct InboundHeaders {
    /// The idempotency key (else the payload's `eventId`), at most 200 characters.
    #[schemars(length(max = 200))]
    pub ce_id: Option<String>,
    /// The key's scope (else the topic): keys of two sources never collide.
    #[schemars(length(max = 200))]
    pub ce_source: Option<String>,
    /// Must be `1.0` when sent.
    #[schemars(extend("const" = "1.0"))]
    pub ce_specversion: Option<String>,
    /// W3C trace context; the consumer's span continues it.
    pub traceparent: Option<String>,
}

/// Headers the consumer adds to a record it dead-letters; the original
/// key, value and headers are kept untouched.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeadLetterHeaders {
    /// Why the record could not be applied.
    pub dlq_reason: String,
    /// The topic it was read from.
    pub dlq_original_topic: String,
    /// Its partition there.
    pub dlq_original_partition: String,
    /// Its offset there.
    pub dlq_original_offset: String,
}

/// Default topic of `payment.authorized` (`TOPIC_PAYMENT_AUTHORIZED`).
pub const PAYMENT_AUTHORIZED_TOPIC: &str = "payment.authorized";
/// Default topic of `payment.failed` (`TOPIC_PAYMENT_FAILED`).
pub const PAYMENT_FAILED_TOPIC: &str = "payment.failed";
/// Default topic of `inventory.reserved` (`TOPIC_INVENTORY_RESERVED`).
pub const INVENTORY_RESERVED_TOPIC: &str = "inventory.reserved";
/// Default dead-letter topic (`KAFKA_DLQ_TOPIC`).
pub const DEAD_LETTER_TOPIC: &str = "order-service.dlq";
