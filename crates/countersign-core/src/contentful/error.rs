//! Why a Contentful request was rejected.

use std::fmt;

/// A Contentful request failed verification: [`kind`](crate::Rejected::kind) is stable and
/// machine-readable; the message says what was wrong for a person and never holds a secret, a
/// signature or the body.
pub type Error = crate::error::Rejected<ErrorKind>;

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
    /// ([`RequestVerifier::with_kinds`](super::RequestVerifier::with_kinds)): a frontend-signed request on a
    /// route for events and webhooks, for instance.
    KindNotAllowed,
    /// The signed `x-contentful-space-id` and the space of the signed `x-contentful-crn`
    /// differ: the request names two tenants.
    ContextConflict,
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
            Self::MalformedSignature => &crate::reason::SIGNATURE_MALFORMED,
            Self::MissingTimestamp => &crate::reason::TIMESTAMP_MISSING,
            Self::MalformedTimestamp => &crate::reason::TIMESTAMP_MALFORMED,
            Self::MissingSignedHeaders => &crate::reason::SIGNED_HEADERS_MISSING,
            Self::Expired => &crate::reason::TIMESTAMP_EXPIRED,
            Self::TimestampInFuture => &crate::reason::TIMESTAMP_IN_FUTURE,
            Self::SignatureMismatch => &crate::reason::SIGNATURE_MISMATCH,
            Self::UnsignedTarget => &crate::reason::TARGET_UNSIGNED,
            Self::TooManySignedHeaders => &crate::reason::SIGNED_HEADERS_TOO_MANY,
            Self::AmbiguousHeader => &crate::reason::SIGNED_HEADER_AMBIGUOUS,
            Self::KindNotAllowed => &crate::reason::REQUEST_KIND_NOT_ALLOWED,
            Self::ContextConflict => &crate::reason::CONTEXT_CONFLICT,
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
