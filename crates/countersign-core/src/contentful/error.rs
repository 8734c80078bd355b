//! Why a Contentful request was rejected.

use std::fmt;

/// A Contentful request failed verification: [`kind`](crate::Rejected::kind) is stable and
/// machine-readable; the message says what was wrong for a person and never holds a secret, a
/// signature or the body.
pub type Error = crate::Rejected<ErrorKind>;

/// Why a Contentful request was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No `x-contentful-signature` header.
    MissingSignature,
    /// `x-contentful-signature` is not 64 lower-case hex characters.
    MalformedSignature,
    /// No `x-contentful-timestamp` header.
    MissingTimestamp,
    /// `x-contentful-timestamp` is not a decimal count of milliseconds after 2020-01-01.
    MalformedTimestamp,
    /// No `x-contentful-signed-headers` header, or it lists fewer than two names.
    MissingSignedHeaders,
    /// The timestamp is at least the time-to-live old.
    Expired,
    /// The timestamp is further ahead of the clock than the allowed skew.
    TimestampInFuture,
    /// The signature matches none of the configured secrets.
    SignatureMismatch,
    /// The request target has a second `?`: what follows it is not signed (by the toolkit's
    /// rule) and would reach the handler unverified.
    UnsignedTarget,
    /// `x-contentful-signed-headers` lists more names than
    /// [`MAX_SIGNED_HEADERS`](super::MAX_SIGNED_HEADERS).
    TooManySignedHeaders,
    /// A signed header's value holds `;` followed by a signed name and `:`: it could move a
    /// boundary of the canonical string, so the signature could stand for another set of
    /// headers (another space, user or time). The toolkit accepts it; we refuse it.
    AmbiguousHeader,
    /// The request is authentic but of a kind this verifier does not take
    /// ([`Verifier::with_kinds`](super::Verifier::with_kinds)): a frontend-signed request on a
    /// route for events and webhooks, for instance.
    KindNotAllowed,
    /// The signed `x-contentful-space-id` and the space of the signed `x-contentful-crn`
    /// differ: the request names two tenants.
    ContextConflict,
}

impl crate::ReasonCode for ErrorKind {
    fn code(self) -> &'static str {
        self.code()
    }
}

impl ErrorKind {
    /// A stable snake_case code for this kind, for HTTP answers, logs and scripts.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::MissingSignature => "signature_missing",
            Self::MalformedSignature => "signature_malformed",
            Self::MissingTimestamp => "timestamp_missing",
            Self::MalformedTimestamp => "timestamp_malformed",
            Self::MissingSignedHeaders => "signed_headers_missing",
            Self::Expired => "timestamp_expired",
            Self::TimestampInFuture => "timestamp_in_future",
            Self::SignatureMismatch => "signature_mismatch",
            Self::UnsignedTarget => "target_unsigned",
            Self::TooManySignedHeaders => "signed_headers_too_many",
            Self::AmbiguousHeader => "signed_header_ambiguous",
            Self::KindNotAllowed => "request_kind_not_allowed",
            Self::ContextConflict => "context_conflict",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
