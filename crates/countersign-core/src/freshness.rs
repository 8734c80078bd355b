//! The one freshness rule of both providers' signatures: how old a signed time may be, and how
//! far ahead of this machine's clock. Each verifier words the refusal in its own terms.

use std::time::{Duration, SystemTime};

/// How old and how far ahead a signed time may be.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// The greatest age accepted; `None`: signatures never expire.
    pub(crate) max_age: Option<Duration>,
    /// Whether an age of exactly `max_age` is already too old (Contentful's toolkit compares
    /// with `>=`, Contentstack with `>`).
    pub(crate) expired_at_limit: bool,
    /// How far ahead of `now` a signed time may be.
    pub(crate) future_skew: Duration,
}

/// Why a signed time is outside its [`Window`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outside {
    /// Signed `age` ago, more than the window's `max_age`.
    Expired { age: Duration, max_age: Duration },
    /// Signed `ahead` in the future, more than the window's `future_skew`.
    Ahead { ahead: Duration, skew: Duration },
}

impl Window {
    /// Whether a time signed at `signed_at` is acceptable at `now`.
    pub(crate) fn check(&self, signed_at: SystemTime, now: SystemTime) -> Result<(), Outside> {
        self.judge(now.duration_since(signed_at).map_err(|e| e.duration()))
    }

    /// [`Window::check`] for times given in Unix milliseconds: integer arithmetic, with no
    /// round trip through the clock's own representation.
    pub(crate) fn check_unix_millis(&self, signed_ms: u64, now_ms: u64) -> Result<(), Outside> {
        self.judge(match now_ms.checked_sub(signed_ms) {
            Some(age) => Ok(Duration::from_millis(age)),
            None => Err(Duration::from_millis(signed_ms - now_ms)),
        })
    }

    /// The verdict on an age (`Ok`) or on a time `Err(ahead)` of the clock.
    fn judge(&self, age: Result<Duration, Duration>) -> Result<(), Outside> {
        match age {
            Ok(age) => match self.max_age {
                Some(max_age) if age > max_age || (self.expired_at_limit && age == max_age) => {
                    Err(Outside::Expired { age, max_age })
                }
                _ => Ok(()),
            },
            Err(ahead) if ahead > self.future_skew => Err(Outside::Ahead {
                ahead,
                skew: self.future_skew,
            }),
            Err(_) => Ok(()),
        }
    }
}

/// The longest duration a time setting holds (about a hundred years): a longer time-to-live,
/// tolerance, skew, leeway, margin or lease is taken as this, so that no window overflows the
/// clock's arithmetic (`Duration::MAX` used to panic on every request).
pub const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);

/// The time `secs` seconds after the Unix epoch, or the latest time the clock holds: a signed
/// `exp` of `u64::MAX` is far in the future, never a panic.
#[must_use]
pub fn unix_seconds(secs: u64) -> std::time::SystemTime {
    let epoch = std::time::SystemTime::UNIX_EPOCH;
    epoch
        .checked_add(std::time::Duration::from_secs(secs))
        .or_else(|| epoch.checked_add(MAX_WINDOW.saturating_mul(100)))
        .or_else(|| epoch.checked_add(MAX_WINDOW))
        .unwrap_or(epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Duration = Duration::from_secs(1_700_000_000);

    fn window(expired_at_limit: bool) -> Window {
        Window {
            max_age: Some(Duration::from_secs(10)),
            expired_at_limit,
            future_skew: Duration::from_secs(2),
        }
    }

    /// Both forms of the check, which must agree (the times here are whole milliseconds).
    fn check(window: Window, signed: Duration, now: Duration) -> Result<(), Outside> {
        let epoch = SystemTime::UNIX_EPOCH;
        let verdict = window.check(epoch + signed, epoch + now);
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap();
        assert_eq!(
            window.check_unix_millis(millis(signed), millis(now)),
            verdict
        );
        verdict
    }

    #[test]
    fn the_age_limit_is_inclusive_or_not_as_the_provider_compares() {
        let ten = Duration::from_secs(10);
        assert_eq!(check(window(false), AT, AT + ten), Ok(()));
        assert_eq!(
            check(window(true), AT, AT + ten),
            Err(Outside::Expired {
                age: ten,
                max_age: ten
            })
        );
        let older = ten + Duration::from_millis(1);
        assert!(matches!(
            check(window(false), AT, AT + older),
            Err(Outside::Expired { .. })
        ));
    }

    #[test]
    fn the_future_skew_is_inclusive_and_no_max_age_never_expires() {
        let two = Duration::from_secs(2);
        assert_eq!(check(window(true), AT + two, AT), Ok(()));
        let ahead = two + Duration::from_millis(1);
        assert_eq!(
            check(window(true), AT + ahead, AT),
            Err(Outside::Ahead { ahead, skew: two })
        );
        let forever = Window {
            max_age: None,
            ..window(true)
        };
        assert_eq!(check(forever, Duration::ZERO, AT), Ok(()));
    }
}
