//! A circuit breaker per dependency: after `UPSTREAM_BREAKER_FAILURES`
//! failures in a row the dependency is not called for
//! `UPSTREAM_BREAKER_OPEN_SECS` (callers get a 503 at once); then one trial
//! call decides: success closes the breaker, failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a dependency counts as down, and for how long it is left alone.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Failures in a row that open the breaker.
    pub failures: u32,
    /// How long it stays open before a trial call.
    pub open_for: Duration,
}

#[derive(Debug, Default)]
struct State {
    failures_in_a_row: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
}

/// The breaker of one dependency.
#[derive(Debug)]
pub struct Breaker {
    service: &'static str,
    settings: BreakerSettings,
    state: Mutex<State>,
}

impl Breaker {
    /// A closed breaker for `service` (the metric label).
    pub fn new(service: &'static str, settings: BreakerSettings) -> Self {
        metrics::gauge!("upstream_breaker_open", "service" => service).set(0.0);
        Breaker {
            service,
            settings,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Ok`: call the dependency (and `record` the result). `Err(wait)`:
    /// the breaker is open; try again after `wait`.
    pub fn admit(&self, now: Instant) -> Result<(), Duration> {
        let mut s = self.state();
        match s.open_until {
            None => Ok(()),
            Some(until) if now < until => Err(until - now),
            // Half-open: one trial call at a time.
            Some(_) if s.trial_in_flight => Err(Duration::from_secs(1)),
            Some(_) => {
                s.trial_in_flight = true;
                Ok(())
            }
        }
    }

    /// The outcome of an admitted call.
    pub fn record(&self, ok: bool, now: Instant) {
        let mut s = self.state();
        let was_open = s.open_until.is_some();
        s.trial_in_flight = false;
        if ok {
            s.failures_in_a_row = 0;
            s.open_until = None;
        } else {
            s.failures_in_a_row = s.failures_in_a_row.saturating_add(1);
            if was_open || s.failures_in_a_row >= self.settings.failures {
                s.open_until = Some(now + self.settings.open_for);
            }
        }
        let open = s.open_until.is_some();
        if open != was_open {
            tracing::warn!(
                service = self.service,
                open,
                "Circuit breaker changed state."
            );
        }
        metrics::gauge!("upstream_breaker_open", "service" => self.service).set(if open {
            1.0
        } else {
            0.0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            "test",
            BreakerSettings {
                failures: 3,
                open_for: Duration::from_secs(30),
            },
        )
    }

    #[test]
    fn opens_after_failures_in_a_row_and_a_success_resets_the_count() {
        let b = breaker();
        let t = Instant::now();
        b.record(false, t);
        b.record(false, t);
        b.record(true, t);
        b.record(false, t);
        b.record(false, t);
        assert!(b.admit(t).is_ok(), "2 in a row: still closed");
        b.record(false, t);
        let wait = b.admit(t + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
    }

    #[test]
    fn after_the_open_period_one_trial_decides() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.record(false, t);
        }
        let later = t + Duration::from_secs(31);
        assert!(b.admit(later).is_ok(), "the trial");
        assert!(b.admit(later).is_err(), "one trial at a time");
        b.record(false, later);
        assert!(
            b.admit(later + Duration::from_secs(1)).is_err(),
            "open again"
        );
        let later = later + Duration::from_secs(31);
        assert!(b.admit(later).is_ok());
        b.record(true, later);
        assert!(b.admit(later).is_ok() && b.admit(later).is_ok(), "closed");
    }
}
