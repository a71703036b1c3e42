//! Exponential backoff with a ceiling, shared by every retry loop of the
//! relay, a throttle for work or warnings that many callers may ask for at
//! once, and a window per kind of log line that counts what it left out.

use std::collections::HashMap;
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

/// The most kinds a [`Repeats`] remembers.
const MAX_KINDS: usize = 1024;

/// When each kind of line was last written, and how many were left out
/// since: a kind is let through the first time, then at most once per
/// window.
#[derive(Debug)]
pub struct Repeats {
    window: Duration,
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug)]
struct Seen {
    logged_at: Instant,
    left_out: u64,
}

impl Repeats {
    pub fn new(window: Duration) -> Self {
        Repeats {
            window,
            seen: Mutex::default(),
        }
    }

    /// `Some(n)` when a line of `kind` is due at `now` (`n` lines of that
    /// kind were left out since the last one), `None` to leave it out.
    pub fn admit(&self, kind: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_KINDS && !seen.contains_key(kind) {
            // Kinds made of text could be many: forget them all rather
            // than grow (each is then logged once more).
            seen.clear();
        }
        match seen.get_mut(kind) {
            None => {
                seen.insert(
                    kind.to_owned(),
                    Seen {
                        logged_at: now,
                        left_out: 0,
                    },
                );
                Some(0)
            }
            Some(s) if now.saturating_duration_since(s.logged_at) >= self.window => {
                s.logged_at = now;
                Some(std::mem::take(&mut s.left_out))
            }
            Some(s) => {
                s.left_out += 1;
                None
            }
        }
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
    use super::{Backoff, Repeats, Throttle};
    use std::time::{Duration, Instant};

    #[test]
    fn a_kind_is_let_through_first_then_once_per_window_with_the_count_left_out() {
        let window = Duration::from_secs(30);
        let repeats = Repeats::new(window);
        let t0 = Instant::now();
        assert_eq!(repeats.admit("client:AllBrokersDown", t0), Some(0));
        for i in 1..=40 {
            let at = t0 + Duration::from_millis(50 * i);
            assert_eq!(repeats.admit("client:AllBrokersDown", at), None);
        }
        // Another kind is not held back by the first.
        let other = t0 + Duration::from_secs(1);
        assert_eq!(
            repeats.admit("client:BrokerTransportFailure", other),
            Some(0)
        );
        let just_before = t0 + window - Duration::from_millis(1);
        assert_eq!(repeats.admit("client:AllBrokersDown", just_before), None);
        assert_eq!(
            repeats.admit("client:AllBrokersDown", t0 + window),
            Some(41)
        );
        let after = t0 + window + Duration::from_secs(1);
        assert_eq!(repeats.admit("client:AllBrokersDown", after), None);
        assert_eq!(
            repeats.admit("client:AllBrokersDown", t0 + 3 * window),
            Some(1),
            "a quiet spell: the next line is due at once"
        );
    }

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
    fn repeats_forget_every_kind_rather_than_grow_past_the_cap() {
        let repeats = Repeats::new(Duration::from_secs(30));
        let now = Instant::now();
        for i in 0..super::MAX_KINDS {
            assert_eq!(repeats.admit(&format!("kind {i}"), now), Some(0));
        }
        assert_eq!(repeats.admit("kind 0", now), None, "remembered");
        assert_eq!(repeats.admit("one too many", now), Some(0));
        assert_eq!(repeats.admit("kind 0", now), Some(0), "forgotten");
        assert!(repeats.seen.lock().unwrap().len() <= 2);
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
