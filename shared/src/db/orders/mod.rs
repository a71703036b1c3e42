//! Orders, their items, history and outbox rows: reads in [`read`], writes
//! in [`create`] (a new order) and [`change`] (a status change). Every write
//! that changes an order also writes its outbox row, in the same statement
//! or transaction. What changes, and why, is decided in `crate::domain`.
//!
//! Their spans are at `debug`: nothing logs inside them at `info`, and the
//! request's log context (or the consumed event's span) already carries
//! the order and trace ids. At `info` each cost a create or a read about 3,500
//! instructions for no line (docs/benchmarks.md, twenty-sixth pass).

pub mod change;
pub mod create;
pub mod read;

pub use crate::db::Emit;
pub use change::{TransitionOutcome, transition_order, write_changed, write_history};
pub use create::{CreateOrder, Created, IdempotencyKey, create_order};
pub use read::{
    OrderQuery, OrderSlice, get_order, get_orders, list_orders, lock_order, order_history,
};
