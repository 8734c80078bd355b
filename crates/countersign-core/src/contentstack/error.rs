//! Why a Contentstack webhook was rejected.

use std::fmt;

/// A Contentstack webhook failed verification: [`kind`](crate::Rejected::kind) is stable and
/// machine-readable; the message says what was wrong for a person and never holds a key, a
/// secret, a signature or the body.
pub type Error = crate::error::Rejected<ErrorKind>;

/// Why a Contentstack webhook was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No signature header of an accepted method.
    MissingSignature,
    /// A signature of a method this verifier is not set up for: an HMAC signature without an
    /// HMAC secret, an RSA signature with RSA off. The message names the setting to add.
    MethodNotConfigured,
    /// The signature header cannot be read: no `v1` element, bad base64 or hex, too long.
    MalformedSignature,
    /// No signature matches any accepted key or secret.
    SignatureMismatch,
    /// No verification key is available yet (the key endpoint has not answered). Not the
    /// sender's fault: answer so that it retries (HTTP 503).
    KeyUnavailable,
    /// The signed time is missing: no `triggered_at` in the body, or no `t` in the HMAC header.
    MissingTimestamp,
    /// The signed time cannot be read (not RFC 3339, not a number, the body is not JSON).
    MalformedTimestamp,
    /// The signed time is older than the tolerance.
    Expired,
    /// The signed time is further ahead of the clock than the allowed skew.
    TimestampInFuture,
    /// An authentic installation event of another app (`data.app_installation.app_uid`).
    AppMismatch,
    /// An installation event (install, upgrade, uninstall) signed with an HMAC secret: a
    /// stack's admins hold that secret, and only the Marketplace's RSA signature makes one.
    InstallationEventNotRsa,
    /// An authentic delivery of a stack that is not one of this app's tenants.
    StackNotAllowed,
    /// Whether the stack is ours cannot be told now (the app's records are unreachable). Not
    /// the sender's fault: answer so that it retries (HTTP 503).
    TenantCheckUnavailable,
}

impl crate::error::ReasonCode for ErrorKind {
    fn reason(self) -> &'static crate::reason::Reason {
        self.reason()
    }
}

impl ErrorKind {
    /// Why, from the [catalogue](crate::reason): the code, the HTTP status, the title and
    /// whether the sender should come back.
    #[must_use]
    pub const fn reason(self) -> &'static crate::reason::Reason {
        match self {
            Self::MissingSignature => &crate::reason::SIGNATURE_MISSING,
            Self::MethodNotConfigured => &crate::reason::SIGNATURE_METHOD_NOT_CONFIGURED,
            Self::MalformedSignature => &crate::reason::SIGNATURE_MALFORMED,
            Self::SignatureMismatch => &crate::reason::SIGNATURE_MISMATCH,
            Self::KeyUnavailable => &crate::reason::KEY_UNAVAILABLE,
            Self::MissingTimestamp => &crate::reason::TIMESTAMP_MISSING,
            Self::MalformedTimestamp => &crate::reason::TIMESTAMP_MALFORMED,
            Self::Expired => &crate::reason::TIMESTAMP_EXPIRED,
            Self::TimestampInFuture => &crate::reason::TIMESTAMP_IN_FUTURE,
            Self::AppMismatch => &crate::reason::APP_UID_MISMATCH,
            Self::InstallationEventNotRsa => &crate::reason::INSTALLATION_EVENT_NOT_RSA,
            Self::StackNotAllowed => &crate::reason::STACK_NOT_ALLOWED,
            Self::TenantCheckUnavailable => &crate::reason::TENANT_CHECK_UNAVAILABLE,
        }
    }

    /// A stable snake_case code for this kind, for HTTP answers, logs and scripts.
    #[must_use]
    pub const fn code(self) -> &'static str {
        self.reason().code
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
