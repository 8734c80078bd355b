//! The rules of a durable inbox: when a delivery whose handler failed is tried again, when it
//! becomes a dead letter, and how long a handled one is remembered.
//!
//! A verified delivery is committed to the inbox and acknowledged at once; workers hand it to
//! the application's handler later. A handler that fails is tried again after a backoff that
//! grows with each attempt ([`Backoff`]); after the last attempt the delivery is a dead letter,
//! kept until someone retries it. A handled delivery is remembered for as long as its
//! signature stays acceptable plus a margin ([`remember_for`]), so the inbox also answers a
//! replay of it as a duplicate.
//!
//! ```
//! use std::time::Duration;
//! use countersign_core::inbox::Backoff;
//!
//! let backoff = Backoff::default();
//! assert_eq!(backoff.after(1), Some(Duration::from_secs(2)));
//! assert_eq!(backoff.after(backoff.max_attempts()), None); // a dead letter
//! ```

use std::time::Duration;

use crate::freshness::MAX_WINDOW;

/// When a failed delivery is tried again: `first` after the first attempt, then each wait
/// `factor` times the one before, never more than `max`; after `max_attempts` attempts, never
/// (a dead letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    factor: u32,
    max: Duration,
    max_attempts: u32,
}

impl Default for Backoff {
    /// 2 s, 8 s, 32 s, 128 s, 512 s, then 600 s twice: 8 attempts over about 31 minutes.
    fn default() -> Self {
        Self {
            first: Duration::from_secs(2),
            factor: 4,
            max: Duration::from_secs(600),
            max_attempts: 8,
        }
    }
}

impl Backoff {
    /// A backoff of `first`, growing `factor` times per attempt up to `max`, for
    /// `max_attempts` attempts (at least 1; `factor` at least 1).
    #[must_use]
    pub fn new(first: Duration, factor: u32, max: Duration, max_attempts: u32) -> Self {
        Self {
            first: first.min(MAX_WINDOW),
            factor: factor.max(1),
            max: max.min(MAX_WINDOW),
            max_attempts: max_attempts.max(1),
        }
    }

    /// How many attempts a delivery gets before it is a dead letter.
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How long after its `attempts`-th failed attempt (1 for the first) a delivery is tried
    /// again; `None` when that was the last: it is a dead letter.
    #[must_use]
    pub fn after(&self, attempts: u32) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let growth = self
            .factor
            .checked_pow(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX);
        Some(self.first.saturating_mul(growth).min(self.max))
    }
}

/// The longest tenant id (a stack's `api_key`, a space id) an inbox keeps: real ones are a few
/// dozen characters, and a database indexes the tenant column within limits of its own.
pub const MAX_TENANT_LEN: usize = 255;

/// Whether an inbox can keep `tenant` as it is: at most [`MAX_TENANT_LEN`] bytes and no
/// control character (PostgreSQL's text holds no NUL, and one tenant's id that the database
/// refuses must never fail a group of commits it shares with others). A Contentstack body may
/// name any `api_key` JSON can write.
#[must_use]
pub fn storable_tenant(tenant: &str) -> bool {
    tenant.len() <= MAX_TENANT_LEN && !tenant.chars().any(char::is_control)
}

/// How long the inbox remembers a delivery: its signature's acceptance `window` plus `margin`
/// (a replay within the window is answered as a duplicate; one after it is refused as stale by
/// the verifier). A signature that never expires is remembered for [`MAX_WINDOW`].
#[must_use]
pub fn remember_for(window: Option<Duration>, margin: Duration) -> Duration {
    window
        .map_or(MAX_WINDOW, |window| window.saturating_add(margin))
        .min(MAX_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_grows_by_the_factor_up_to_the_bound_and_ends_in_a_dead_letter() {
        let backoff = Backoff::new(Duration::from_secs(1), 3, Duration::from_secs(20), 5);
        let waits: Vec<_> = (1..=5).map(|n| backoff.after(n)).collect();
        assert_eq!(
            waits,
            [
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(3)),
                Some(Duration::from_secs(9)),
                Some(Duration::from_secs(20)),
                None
            ]
        );
        let huge = Backoff::new(Duration::MAX, u32::MAX, Duration::MAX, u32::MAX);
        assert_eq!(huge.after(40), Some(MAX_WINDOW), "no overflow");
        assert_eq!(
            Backoff::new(Duration::ZERO, 0, Duration::ZERO, 0).after(1),
            None
        );
    }

    #[test]
    fn a_delivery_is_remembered_for_its_window_and_the_margin() {
        assert_eq!(
            remember_for(Some(Duration::from_secs(1800)), Duration::from_secs(60)),
            Duration::from_secs(1860)
        );
        assert_eq!(remember_for(None, Duration::from_secs(60)), MAX_WINDOW);
    }
}
