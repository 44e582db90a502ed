//! Per-token rate limits (token buckets keyed by token id, via `governor`).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use uuid::Uuid;

type Keyed = RateLimiter<Uuid, DefaultKeyedStateStore<Uuid>, DefaultClock>;

/// Requests per second allowed to one token, on ingest and on the API.
#[derive(Debug, Clone, Copy)]
pub struct LimitConfig {
    pub ingest_per_second: u32,
    pub api_per_second: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            ingest_per_second: 1000,
            api_per_second: 50,
        }
    }
}

pub struct TokenLimits {
    ingest: Keyed,
    api: Keyed,
    clock: DefaultClock,
}

fn quota(per_second: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).expect("non-zero");
    // A burst of one second's worth smooths client batching.
    Quota::per_second(rate).allow_burst(rate)
}

impl TokenLimits {
    pub fn new(config: LimitConfig) -> TokenLimits {
        TokenLimits {
            ingest: RateLimiter::keyed(quota(config.ingest_per_second)),
            api: RateLimiter::keyed(quota(config.api_per_second)),
            clock: DefaultClock::default(),
        }
    }

    fn check(&self, limiter: &Keyed, token: Uuid) -> Result<(), Duration> {
        limiter
            .check_key(&token)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// `Err(wait)` when the token is over its ingest rate.
    pub fn check_ingest(&self, token: Uuid) -> Result<(), Duration> {
        self.check(&self.ingest, token)
    }

    /// `Err(wait)` when the token is over its API rate.
    pub fn check_api(&self, token: Uuid) -> Result<(), Duration> {
        self.check(&self.api, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_per_token() {
        let limits = TokenLimits::new(LimitConfig {
            ingest_per_second: 3,
            api_per_second: 2,
        });
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        assert!(limits.check_api(a).is_ok());
        assert!(limits.check_api(a).is_ok());
        let wait = limits.check_api(a).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        assert!(
            limits.check_api(b).is_ok(),
            "another token has its own bucket"
        );
        for _ in 0..3 {
            assert!(
                limits.check_ingest(a).is_ok(),
                "ingest and api are separate"
            );
        }
        assert!(limits.check_ingest(a).is_err());
    }
}
