//! [`AccessTokenError`]: why no access token could be had.

use std::fmt;
use std::time::Duration;

use countersign_core::ConfigError;
use countersign_core::contentful::app_identity::Refusal;

/// Why no access token could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenError {
    kind: AccessTokenErrorKind,
    message: String,
    status: Option<http::StatusCode>,
    retry_after: Option<Duration>,
}

/// What kind of failure an [`AccessTokenError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AccessTokenErrorKind {
    /// The inputs cannot make a request: an id that is not a Contentful id, a key that cannot
    /// sign. Nothing was sent.
    Config,
    /// Contentful refused (a `4xx` other than `429`, or a `201` without a token): the key is
    /// not registered, the app is not installed there, the ids are wrong. Final.
    Refused,
    /// Still rate limited after the attempts, or asked to wait longer than the bound:
    /// [`AccessTokenError::retry_after`] says when to try again.
    RateLimited,
    /// The host failed (`5xx`) or could not be reached, through every attempt.
    Unavailable,
}

impl AccessTokenError {
    pub(super) fn config(error: ConfigError) -> Self {
        Self::new(AccessTokenErrorKind::Config, error.to_string(), None)
    }

    pub(super) fn refused(refusal: Refusal) -> Self {
        Self::new(
            AccessTokenErrorKind::Refused,
            format!("Contentful refused the exchange: {refusal}"),
            Some(refusal.status),
        )
    }

    pub(super) fn rate_limited(wait: Duration) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::new(
                AccessTokenErrorKind::RateLimited,
                format!(
                    "rate limited by Contentful for {} s",
                    wait.as_secs_f64().ceil()
                ),
                Some(http::StatusCode::TOO_MANY_REQUESTS),
            )
        }
    }

    pub(super) fn unavailable(message: String, status: Option<http::StatusCode>) -> Self {
        Self::new(AccessTokenErrorKind::Unavailable, message, status)
    }

    fn new(kind: AccessTokenErrorKind, message: String, status: Option<http::StatusCode>) -> Self {
        Self {
            kind,
            message,
            status,
            retry_after: None,
        }
    }

    /// What kind of failure it is.
    #[must_use]
    pub fn kind(&self) -> AccessTokenErrorKind {
        self.kind
    }

    /// The status Contentful last answered, when it answered.
    #[must_use]
    pub fn status(&self) -> Option<http::StatusCode> {
        self.status
    }

    /// When to try again, for [`AccessTokenErrorKind::RateLimited`].
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for AccessTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AccessTokenError {}
