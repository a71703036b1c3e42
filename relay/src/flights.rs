//! A shard's batches in flight whose acks no task waits for. At the rates
//! of a busy shop a shard sends a row or two per claim, and a task woken by
//! librdkafka's delivery thread for each such batch cost more than the
//! batch itself. So a batch that is not full is left here, sent, and the
//! coordinator polls it just before each claim, without a waker: the
//! claim is the first thing its acks change (it deletes the acked rows and
//! may then claim the batch's orders again). A full batch (more rows are
//! likely waiting) is still awaited by its worker, which claims again at
//! once.
//!
//! The acks keep their own times: every delivery future is polled with a
//! waker that notes when it is woken ([`AckClock`]), so
//! `outbox_publish_latency_seconds` is commit -> ack, not commit -> poll.

use crate::ack_clock::AckClock;
use crate::publisher::{PublishError, Step};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use uuid::Uuid;

/// What settling a batch gives: the rows that may be deleted, and the step.
pub type Outcome = (Vec<i64>, Result<Step, PublishError>);

/// A waker that notes the time on the batch's clock, then wakes whoever
/// polled (nobody, when the coordinator polls).
struct ClockWaker {
    clock: Arc<AckClock>,
    task: Waker,
}

impl Wake for ClockWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.clock.tick();
        self.task.wake_by_ref();
    }
}

/// The settling of one batch (waiting for its acks, recording failures),
/// polled with a waker that times every wake-up on its [`AckClock`].
pub struct Settling {
    clock: Arc<AckClock>,
    inner: Pin<Box<dyn Future<Output = Outcome> + Send>>,
}

impl Settling {
    /// `settle` gets the clock to read the acks' time from.
    pub fn new<F>(settle: impl FnOnce(Arc<AckClock>) -> F) -> Self
    where
        F: Future<Output = Outcome> + Send + 'static,
    {
        let clock = Arc::new(AckClock::default());
        Settling {
            inner: Box::pin(settle(clock.clone())),
            clock,
        }
    }
}

impl Future for Settling {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let waker = Waker::from(Arc::new(ClockWaker {
            clock: self.clock.clone(),
            task: cx.waker().clone(),
        }));
        self.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

/// One batch: the order of each row, and its settling.
pub type Flight = (Vec<Uuid>, Settling);
/// A batch settled with anything but a success: for its worker to handle.
pub type Report = (Vec<Uuid>, Outcome);

/// The batches of one shard left to the coordinator's polls, and the
/// outcomes its worker has to handle.
#[derive(Default)]
pub struct Flights {
    flying: Mutex<Vec<Flight>>,
    reports: Mutex<Vec<Report>>,
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights")
            .field("flying", &lock(&self.flying).len())
            .field("reports", &lock(&self.reports).len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Flights {
    pub fn fly(&self, flight: Flight) {
        lock(&self.flying).push(flight);
    }

    /// Polls every batch once without a waker: `published` gets each one
    /// that published all it could (its orders and the rows to delete);
    /// any other outcome is kept for the worker. Returns whether one was.
    pub fn poll(&self, published: impl Fn(&[Uuid], &[i64])) -> bool {
        let mut flying = lock(&self.flying);
        let mut cx = Context::from_waker(Waker::noop());
        let mut reported = false;
        let mut i = 0;
        while i < flying.len() {
            let Poll::Ready((acked, step)) = Pin::new(&mut flying[i].1).poll(&mut cx) else {
                i += 1;
                continue;
            };
            // Batches in flight have no order among them (their orders differ).
            let (orders, _) = flying.swap_remove(i);
            match step {
                Ok(Step::Published(_)) => published(&orders, &acked),
                step => {
                    lock(&self.reports).push((orders, (acked, step)));
                    reported = true;
                }
            }
        }
        reported
    }

    /// The next outcome for the worker.
    pub fn report(&self) -> Option<Report> {
        lock(&self.reports).pop()
    }

    /// Everything left, for a worker that stops: it settles the batches
    /// itself.
    pub fn take(&self) -> (Vec<Flight>, Vec<Report>) {
        (
            std::mem::take(&mut *lock(&self.flying)),
            std::mem::take(&mut *lock(&self.reports)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// A batch whose one "ack" is `ack`; its outcome names the rows to
    /// delete (`[1]`) or fails when the ack says so.
    fn batch(ack: oneshot::Receiver<bool>, clock: &mut Option<Arc<AckClock>>) -> Settling {
        Settling::new(|acks| {
            *clock = Some(acks);
            async move {
                match ack.await {
                    Ok(true) => (vec![1], Ok(Step::Published(1))),
                    _ => (vec![], Err(PublishError::LeaseLost)),
                }
            }
        })
    }

    #[tokio::test]
    async fn a_polled_batch_is_timed_at_its_ack_not_at_the_poll() {
        let flights = Flights::default();
        let (ack, rx) = oneshot::channel();
        let mut clock = None;
        let order = Uuid::now_v7();
        flights.fly((vec![order], batch(rx, &mut clock)));
        let clock = clock.unwrap();
        let published = AtomicUsize::new(0);
        let count = |orders: &[Uuid], acked: &[i64]| {
            assert_eq!((orders, acked), (&[order][..], &[1][..]));
            published.fetch_add(1, Ordering::SeqCst);
        };
        assert!(!flights.poll(count), "nothing to report");
        assert_eq!(published.load(Ordering::SeqCst), 0, "no ack yet");
        assert_eq!(clock.since_latest(), None);

        ack.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!flights.poll(count));
        assert_eq!(published.load(Ordering::SeqCst), 1, "settled by the poll");
        let ago = clock
            .since_latest()
            .expect("the ack woke the batch's waker");
        assert!(
            ago >= Duration::from_millis(200),
            "timed at the ack: {ago:?}"
        );
        assert!(flights.take().0.is_empty());
    }

    #[tokio::test]
    async fn a_failure_goes_to_the_worker_and_a_worker_takes_over_what_is_left() {
        let flights = Flights::default();
        let (fail, rx) = oneshot::channel();
        flights.fly((vec![Uuid::now_v7()], batch(rx, &mut None)));
        let (ack, rx) = oneshot::channel();
        flights.fly((vec![Uuid::now_v7()], batch(rx, &mut None)));
        assert!(!flights.poll(|_, _| {}));

        fail.send(false).unwrap();
        assert!(flights.poll(|_, _| panic!("nothing published")), "reported");
        let (_, (acked, step)) = flights.report().expect("the failure");
        assert!(acked.is_empty() && step.is_err());
        assert!(flights.report().is_none());

        // A stopping worker awaits the rest with its own waker: the ack
        // that comes later wakes it, although only polls without a waker
        // had looked at the batch before.
        let (mut left, reports) = flights.take();
        assert!(reports.is_empty());
        let (_, settling) = left.pop().unwrap();
        let waiting = tokio::spawn(settling);
        tokio::time::sleep(Duration::from_millis(50)).await;
        ack.send(true).unwrap();
        let (acked, step) = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by the ack")
            .unwrap();
        assert_eq!((acked, step.unwrap()), (vec![1], Step::Published(1)));
    }
}
