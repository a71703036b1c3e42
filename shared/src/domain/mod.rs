//! The business rules: order status machine, what each change does, money,
//! validation and events. Nothing here does I/O.
//!
//! "What happens when an order is cancelled?" is answered in [`change`]:
//! [`Order::apply`] checks the state machine ([`status`]), sets the fields,
//! bumps the version and builds the history entry and the event. Events of
//! other services map to changes in [`inbound`].

pub mod change;
pub mod events;
pub mod inbound;
pub mod money;
pub mod new_order;
pub mod order;
pub mod payloads;
pub mod precondition;
pub mod status;
pub mod values;

pub use change::{Change, Changed, DomainError, Step, Transition};
pub use events::{Event, EventData, EventType, OutboxEvent};
pub use inbound::{InboundEvent, Reaction};
pub use money::Currency;
pub use new_order::{
    AddressInput, CONTROL_CHARACTERS, FieldError, ItemInput, NewOrder, NewOrderInput, check_text,
};
pub use order::{HistoryEntry, Order, OrderLine, ShippingAddress};
pub use precondition::{IfMatch, entity_tag};
pub use status::{OrderStatus, TransitionCheck};
pub use values::{OrderId, Quantity, UserId};
