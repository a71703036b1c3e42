//! Abuse limits: a per-user rate limit on order creation
//! (`RATE_LIMIT_ORDERS_PER_MINUTE`, off when unset or 0), a token bucket
//! per user (governor's GCRA): the quota refills evenly over the minute.

use crate::problem::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use order_shared::domain::UserId;
use std::num::NonZeroU32;

/// Users remembered before idle ones are forgotten.
const RETAIN_ABOVE: usize = 100_000;

/// Order creations allowed per user and minute.
pub struct OrderRateLimit {
    limiter: DefaultKeyedRateLimiter<UserId>,
    clock: DefaultClock,
}

impl std::fmt::Debug for OrderRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderRateLimit").finish_non_exhaustive()
    }
}

impl OrderRateLimit {
    /// `per_minute` creations per user, a burst of as many.
    pub fn new(per_minute: NonZeroU32) -> Self {
        OrderRateLimit {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one creation from `user`'s quota, or answers 429 with the
    /// seconds until the next one is allowed.
    pub fn check(&self, user: &UserId) -> Result<(), ApiError> {
        if self.limiter.len() > RETAIN_ABOVE {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(user).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            metrics::counter!("orders_rate_limited_total").increment(1);
            tracing::info!(user_id = %user, retry_after_secs = secs, "Order creation rate-limited.");
            ApiError::too_many_requests(secs.max(1))
        })
    }
}
