//! [`OAuthError`]: why no token could be had.

use countersign_core::Rejected;
use countersign_core::replay::StoreError;

/// Why no token could be had: a [`OAuthErrorKind`] and a message that holds no token or secret.
/// A backend answers `Rejection::from(error)`.
pub type OAuthError = Rejected<OAuthErrorKind>;

countersign_core::reason_kind! {
    /// The kinds of [`OAuthError`].
    pub enum OAuthErrorKind {
        /// The installation has no usable tokens: authorize the app again.
        NotAuthorized => OAUTH_NOT_AUTHORIZED,
        /// The code or refresh token was used, expired or revoked (`400 invalid_grant`).
        InvalidGrant => OAUTH_INVALID_GRANT,
        /// The token endpoint refused for another reason (client id or secret, redirect URI), or
        /// answered what is not a token set.
        Refused => OAUTH_REFUSED,
        /// The token endpoint or the store could not answer now: try again later.
        Unavailable => OAUTH_UNAVAILABLE,
        /// A redirect's `location` that is not one of the seven regions.
        InvalidLocation => OAUTH_INVALID_LOCATION,
        /// This side's setup: a public client exchanging a code without its PKCE verifier.
        Misconfigured => OAUTH_MISCONFIGURED,
        /// The token store failed.
        Store => OAUTH_STORE_UNAVAILABLE,
        /// The Content Management API did not answer
        /// ([`ContentstackOAuth::send`](super::ContentstackOAuth::send)).
        CmaUnavailable => CMA_UNAVAILABLE,
    }
}

/// The token store failed: [`OAuthErrorKind::Store`].
pub(super) fn store_failed(error: StoreError) -> OAuthError {
    OAuthError::new(OAuthErrorKind::Store, error.to_string())
}
