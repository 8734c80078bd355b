//! [`OAuthError`]: why no token could be had.

use std::fmt;

use countersign_core::reason::{self, Reason};
use countersign_core::replay::StoreError;

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    kind: OAuthErrorKind,
    message: String,
}

/// The kinds of [`OAuthError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OAuthErrorKind {
    /// The installation has no usable tokens: authorize the app again.
    NotAuthorized,
    /// The code or refresh token was used, expired or revoked (`400 invalid_grant`).
    InvalidGrant,
    /// The token endpoint refused for another reason (client id or secret, redirect URI), or
    /// answered what is not a token set.
    Refused,
    /// The token endpoint or the store could not answer now: try again later.
    Unavailable,
    /// A redirect's `location` that is not one of the seven regions.
    InvalidLocation,
    /// This side's setup: a public client exchanging a code without its PKCE verifier.
    Misconfigured,
    /// The token store failed.
    Store,
    /// The Content Management API did not answer ([`ContentstackOAuth::send`]).
    CmaUnavailable,
}

impl OAuthErrorKind {
    /// Why, from the [catalogue](countersign_core::reason): the code and the HTTP status a
    /// backend answers with (`Rejection::of(error.kind().reason(), error.message())`).
    #[must_use]
    pub const fn reason(self) -> &'static Reason {
        match self {
            Self::NotAuthorized => &reason::OAUTH_NOT_AUTHORIZED,
            Self::InvalidGrant => &reason::OAUTH_INVALID_GRANT,
            Self::Refused => &reason::OAUTH_REFUSED,
            Self::Unavailable => &reason::OAUTH_UNAVAILABLE,
            Self::InvalidLocation => &reason::OAUTH_INVALID_LOCATION,
            Self::Misconfigured => &reason::OAUTH_MISCONFIGURED,
            Self::Store => &reason::OAUTH_STORE_UNAVAILABLE,
            Self::CmaUnavailable => &reason::CMA_UNAVAILABLE,
        }
    }
}

impl OAuthError {
    pub(super) fn new(kind: OAuthErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Why.
    #[must_use]
    pub fn kind(&self) -> OAuthErrorKind {
        self.kind
    }

    /// What happened, without any token or secret.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        Self::new(OAuthErrorKind::Store, error.to_string())
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OAuthError {}
