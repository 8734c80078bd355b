//! Why a Contentstack webhook was rejected.

/// A Contentstack webhook failed verification: [`kind`](crate::Rejected::kind) is stable and
/// machine-readable; the message says what was wrong for a person and never holds a key, a
/// secret, a signature or the body.
pub type Error = crate::error::Rejected<ErrorKind>;

crate::reason_kind! {
    /// Why a Contentstack webhook was rejected.
    pub enum ErrorKind {
        /// No signature header of an accepted method.
        MissingSignature => SIGNATURE_MISSING,
        /// A signature of a method this verifier is not set up for: an HMAC signature without an
        /// HMAC secret, an RSA signature with RSA off. The message names the setting to add.
        MethodNotConfigured => SIGNATURE_METHOD_NOT_CONFIGURED,
        /// The signature header cannot be read: no `v1` element, bad base64 or hex, too long.
        MalformedSignature => SIGNATURE_MALFORMED,
        /// No signature matches any accepted key or secret.
        SignatureMismatch => SIGNATURE_MISMATCH,
        /// No verification key is available yet (the key endpoint has not answered). Not the
        /// sender's fault: answer so that it retries (HTTP 503).
        KeyUnavailable => KEY_UNAVAILABLE,
        /// The signed time is missing: no `triggered_at` in the body, or no `t` in the HMAC header.
        MissingTimestamp => TIMESTAMP_MISSING,
        /// The signed time cannot be read (not RFC 3339, not a number, the body is not JSON).
        MalformedTimestamp => TIMESTAMP_MALFORMED,
        /// The signed time is older than the tolerance.
        Expired => TIMESTAMP_EXPIRED,
        /// The signed time is further ahead of the clock than the allowed skew.
        TimestampInFuture => TIMESTAMP_IN_FUTURE,
        /// An authentic installation event of another app (`data.app_installation.app_uid`).
        AppMismatch => APP_UID_MISMATCH,
        /// An installation event (install, upgrade, uninstall) signed with an HMAC secret: a
        /// stack's admins hold that secret, and only the Marketplace's RSA signature makes one.
        InstallationEventNotRsa => INSTALLATION_EVENT_NOT_RSA,
        /// An authentic delivery of a stack that is not one of this app's tenants.
        StackNotAllowed => STACK_NOT_ALLOWED,
        /// Whether the stack is ours cannot be told now (the app's records are unreachable). Not
        /// the sender's fault: answer so that it retries (HTTP 503).
        TenantCheckUnavailable => TENANT_CHECK_UNAVAILABLE,
    }
}
