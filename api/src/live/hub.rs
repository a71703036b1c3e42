//! The fan-out of one API replica: which open stream watches what, the last
//! version sent of each watched order, and the orders to read again. A
//! change reaches the hub three ways: from this replica's own handler at
//! once ([`Hub::publish`]), as a relay hint ([`Hub::hint`]) and from the
//! periodic version check; the hub sends each version of an order once.

use order_shared::db::interest::{ALL_ORDERS, order_bucket, user_bucket};
use order_shared::db::live::{Hint, Watched};
use order_shared::domain::{Order, OrderId, UserId};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};

/// Updates a stream may have queued before it counts as stuck and is
/// closed (its client reconnects with `Last-Event-ID`).
const STREAM_QUEUE: usize = 64;
/// How long the last version sent of an order is remembered: longer than
/// any hint takes, and than the version check looks back (a few seconds).
/// An admin's all-orders stream makes every order remembered: 30 s at
/// 2,000 orders/s is about 60,000 entries.
const REMEMBER: Duration = Duration::from_secs(30);

/// What one stream watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watch {
    /// One order (its owner or an admin was checked at connect).
    Order(OrderId),
    /// Every order of one user.
    User(UserId),
    /// Every order (admins).
    All,
}

/// The caller already has `SSE_MAX_STREAMS_PER_USER` streams open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many open streams")]
pub struct TooManyStreams;

struct Stream {
    tx: mpsc::Sender<Arc<Order>>,
    caller: UserId,
    watch: Watch,
}

#[derive(Default)]
struct State {
    next_id: u64,
    streams: HashMap<u64, Stream>,
    by_order: HashMap<OrderId, HashSet<u64>>,
    by_user: HashMap<UserId, HashSet<u64>>,
    all: HashSet<u64>,
    per_caller: HashMap<UserId, usize>,
    /// Highest version fanned out, per order, and when.
    sent: HashMap<OrderId, (i64, Instant)>,
    /// Orders queued for a read.
    pending: HashSet<OrderId>,
}

impl State {
    fn interested(&self, order_id: OrderId, user_id: &UserId) -> bool {
        !self.all.is_empty()
            || self.by_order.contains_key(&order_id)
            || self.by_user.contains_key(user_id)
    }

    fn newer(&self, order_id: OrderId, version: i64) -> bool {
        self.sent.get(&order_id).is_none_or(|(v, _)| version > *v)
    }

    fn remove(&mut self, id: u64) {
        let Some(stream) = self.streams.remove(&id) else {
            return;
        };
        let set = match &stream.watch {
            Watch::Order(order) => self
                .by_order
                .get_mut(order)
                .map(|s| (s, Some(*order), None)),
            Watch::User(user) => self
                .by_user
                .get_mut(user)
                .map(|s| (s, None, Some(user.clone()))),
            Watch::All => {
                self.all.remove(&id);
                None
            }
        };
        if let Some((set, order, user)) = set {
            set.remove(&id);
            if set.is_empty() {
                if let Some(order) = order {
                    self.by_order.remove(&order);
                }
                if let Some(user) = user {
                    self.by_user.remove(&user);
                }
            }
        }
        if let Some(n) = self.per_caller.get_mut(&stream.caller) {
            *n -= 1;
            if *n == 0 {
                self.per_caller.remove(&stream.caller);
            }
        }
    }
}

/// The replica's fan-out. Cheap when no stream is open: one atomic load.
pub struct Hub {
    state: Mutex<State>,
    open: AtomicUsize,
    max_per_user: usize,
    reads: mpsc::UnboundedSender<OrderId>,
    /// A stream opened or closed: what the replica watches may differ.
    watch_changed: Notify,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("open", &self.open).finish()
    }
}

/// An open stream's end of the hub; dropping it closes the stream's slot.
pub struct Subscription {
    id: u64,
    hub: Arc<Hub>,
    /// The updates for this stream, in the order they were fanned out.
    pub updates: mpsc::Receiver<Arc<Order>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.hub.lock();
        state.remove(self.id);
        let open = state.streams.len();
        drop(state);
        self.hub.open.store(open, Ordering::Release);
        self.hub.watch_changed.notify_one();
        metrics::gauge!("sse_open_streams").set(open as f64);
    }
}

impl Hub {
    /// A hub allowing `max_per_user` streams per caller; orders to read
    /// again are sent to `reads`.
    pub fn new(max_per_user: usize, reads: mpsc::UnboundedSender<OrderId>) -> Arc<Self> {
        metrics::gauge!("sse_open_streams").set(0.0);
        Arc::new(Hub {
            state: Mutex::new(State::default()),
            open: AtomicUsize::new(0),
            max_per_user,
            reads,
            watch_changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked mid-way:
        // every method leaves it whole before it can panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open streams on this replica.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Opens a stream for `caller` watching `watch`.
    pub fn subscribe(
        self: &Arc<Self>,
        caller: &UserId,
        watch: Watch,
    ) -> Result<Subscription, TooManyStreams> {
        let (tx, updates) = mpsc::channel(STREAM_QUEUE);
        let mut state = self.lock();
        let count = state.per_caller.entry(caller.clone()).or_default();
        if *count >= self.max_per_user {
            return Err(TooManyStreams);
        }
        *count += 1;
        state.next_id += 1;
        let id = state.next_id;
        match &watch {
            Watch::Order(order) => {
                state.by_order.entry(*order).or_default().insert(id);
            }
            Watch::User(user) => {
                state.by_user.entry(user.clone()).or_default().insert(id);
            }
            Watch::All => {
                state.all.insert(id);
            }
        }
        state.streams.insert(
            id,
            Stream {
                tx,
                caller: caller.clone(),
                watch,
            },
        );
        let open = state.streams.len();
        drop(state);
        self.open.store(open, Ordering::Release);
        self.watch_changed.notify_one();
        metrics::gauge!("sse_open_streams").set(open as f64);
        Ok(Subscription {
            id,
            hub: self.clone(),
            updates,
        })
    }

    /// Fans out `order` to the streams that watch it, unless that version
    /// (or a later one) was sent already.
    pub fn publish(&self, order: &Order) {
        if self.open_streams() == 0 {
            return;
        }
        let mut state = self.lock();
        if !state.interested(order.id, &order.user_id) || !state.newer(order.id, order.version) {
            return;
        }
        state.sent.insert(order.id, (order.version, Instant::now()));
        let order = Arc::new(order.clone());
        let targets: Vec<u64> = state
            .by_order
            .get(&order.id)
            .into_iter()
            .chain(state.by_user.get(&order.user_id))
            .flatten()
            .chain(state.all.iter())
            .copied()
            .collect();
        let mut stuck = Vec::new();
        for id in targets {
            if let Some(stream) = state.streams.get(&id)
                && stream.tx.try_send(order.clone()).is_err()
            {
                stuck.push(id);
            }
        }
        for id in stuck {
            // Dropping its sender ends the stream; the client reconnects.
            metrics::counter!("sse_streams_dropped_total").increment(1);
            state.remove(id);
            self.watch_changed.notify_one();
        }
        let open = state.streams.len();
        drop(state);
        self.open.store(open, Ordering::Release);
    }

    /// A change another replica or the relay's consumer announced, or the
    /// version check found: the order is read again if someone watches it
    /// and the version is new.
    pub fn hint(&self, hint: &Hint) {
        if self.open_streams() == 0 {
            return;
        }
        let mut state = self.lock();
        if state.interested(hint.order_id, &hint.user_id)
            && state.newer(hint.order_id, hint.version)
            && state.pending.insert(hint.order_id)
        {
            let _ = self.reads.send(hint.order_id);
        }
    }

    /// The orders read (or gone): they may be queued again.
    pub fn read_done(&self, ids: &[OrderId]) {
        let mut state = self.lock();
        for id in ids {
            state.pending.remove(id);
        }
    }

    /// The interest buckets of what the open streams watch
    /// ([`order_shared::db::interest`]).
    pub fn interest(&self) -> BTreeSet<i32> {
        let state = self.lock();
        let orders = state.by_order.keys().map(|id| order_bucket(*id));
        let users = state.by_user.keys().map(|u| user_bucket(u.as_str()));
        let all = (!state.all.is_empty()).then_some(ALL_ORDERS);
        orders.chain(users).chain(all).collect()
    }

    /// Waits until a stream opens or closes (at once if one did since the
    /// last wait).
    pub async fn watch_changed(&self) {
        self.watch_changed.notified().await;
    }

    /// What the open streams watch, for the version check; forgets old
    /// versions on the way.
    pub fn watched(&self) -> Watched {
        let mut state = self.lock();
        state.sent.retain(|_, (_, at)| at.elapsed() < REMEMBER);
        Watched {
            orders: state.by_order.keys().copied().collect(),
            users: state.by_user.keys().cloned().collect(),
            all: !state.all.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests;
