//! Live order updates (Server-Sent Events) across API replicas.
//!
//! A change made on this replica is fanned out by its handler at once, and
//! announced to the other replicas right after its commit ([`Announcer`]:
//! queued by the handler, NOTIFYed in batches by a task, outside the write
//! transaction). A change made by the relay's consumer reaches every
//! replica the same way: the consumer announces it after its commit. Each
//! replica LISTENs on one connection ([`feed`]) and reads only orders that
//! an open stream watches; on that connection it also holds the interest
//! locks that tell every announcer which changes some stream may watch
//! (`order_shared::db::interest`): the others are not announced at all. A
//! once-a-second version check of the watched orders keeps streams current
//! when a hint is lost. The create path pays nothing for any of this: no
//! NOTIFY in its transaction.

pub mod feed;
pub mod hub;

pub use hub::{Hub, Subscription, TooManyStreams, Watch};
pub use order_shared::db::live::Announcer;

use std::time::Duration;

/// `SSE_*` settings.
#[derive(Debug, Clone, Copy)]
pub struct LiveSettings {
    /// `SSE_MAX_STREAMS_PER_USER`: open streams per user on one replica.
    pub max_streams_per_user: usize,
    /// `SSE_HEARTBEAT_MS`: a comment line this often keeps proxies and the
    /// idle timeout from closing a quiet stream.
    pub heartbeat: Duration,
    /// `SSE_CHECK_INTERVAL_MS`: the version check of watched orders.
    pub check_every: Duration,
}
