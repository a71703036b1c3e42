//! When a batch's last ack came, taken by the wakers its delivery futures
//! are polled with (`crate::flights::Settling`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When the last ack of a batch came: the time of the latest wake-up of a
/// waker made by [`Settling`](crate::flights::Settling) (a delivery future is woken when its ack, or
/// its failure, arrives).
#[derive(Debug)]
pub struct AckClock {
    start: Instant,
    /// Nanoseconds from `start` to the latest wake-up, plus one (0: none).
    latest: AtomicU64,
}

impl Default for AckClock {
    fn default() -> Self {
        AckClock {
            start: Instant::now(),
            latest: AtomicU64::new(0),
        }
    }
}

impl AckClock {
    /// Notes a wake-up now.
    pub fn tick(&self) {
        let nanos = self.start.elapsed().as_nanos().min(u64::MAX as u128 - 1) as u64;
        self.latest.fetch_max(nanos + 1, Ordering::Relaxed);
    }

    /// How long ago the latest wake-up was (`None`: there was none).
    pub fn since_latest(&self) -> Option<Duration> {
        match self.latest.load(Ordering::Relaxed) {
            0 => None,
            n => Some(
                self.start
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(n - 1)),
            ),
        }
    }
}
