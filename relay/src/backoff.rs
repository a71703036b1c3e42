//! Exponential backoff with a ceiling, shared by every retry loop of the
//! relay, and a throttle for work or warnings that many callers may ask
//! for at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets something through at most once per period, whoever asks.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    pub fn new(period: Duration) -> Self {
        Throttle {
            period,
            last: Mutex::new(None),
        }
    }

    /// Whether it may go now (and then not again for a period).
    pub fn due(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < self.period) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

/// Doubles the delay after each failure up to `max`; `reset` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            next: min,
            min,
            max,
        }
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::{Backoff, Throttle};
    use std::time::Duration;

    #[test]
    fn a_throttle_lets_one_through_per_period() {
        let throttle = Throttle::new(Duration::from_secs(3600));
        assert!(throttle.due());
        assert!(!throttle.due());
        assert!(!throttle.due());
        let short = Throttle::new(Duration::from_millis(20));
        assert!(short.due());
        std::thread::sleep(Duration::from_millis(30));
        assert!(short.due(), "again after the period");
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u64> = (0..4).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
