//! The business rules: order status machine, money, validation and events.
//! Nothing here does I/O.

pub mod events;
pub mod money;
pub mod order;
pub mod status;

pub use events::{EventData, EventType, OutboxEvent};
pub use order::{FieldError, HistoryEntry, NewOrder, NewOrderInput, Order, OrderLine};
pub use status::{OrderStatus, TransitionCheck};
