//! Why a Contentful request was rejected.

/// A Contentful request failed verification: [`kind`](crate::Rejected::kind) is stable and
/// machine-readable; the message says what was wrong for a person and never holds a secret, a
/// signature or the body.
pub type Error = crate::error::Rejected<ErrorKind>;

crate::reason_kind! {
    /// Why a Contentful request was rejected.
    pub enum ErrorKind {
        /// No `x-contentful-signature` header.
        MissingSignature => SIGNATURE_MISSING,
        /// `x-contentful-signature` is not 64 lower-case hex characters.
        MalformedSignature => SIGNATURE_MALFORMED,
        /// No `x-contentful-timestamp` header.
        MissingTimestamp => TIMESTAMP_MISSING,
        /// `x-contentful-timestamp` is not a decimal count of milliseconds after 2020-01-01.
        MalformedTimestamp => TIMESTAMP_MALFORMED,
        /// No `x-contentful-signed-headers` header, or it lists fewer than two names.
        MissingSignedHeaders => SIGNED_HEADERS_MISSING,
        /// The timestamp is at least the time-to-live old.
        Expired => TIMESTAMP_EXPIRED,
        /// The timestamp is further ahead of the clock than the allowed skew.
        TimestampInFuture => TIMESTAMP_IN_FUTURE,
        /// The signature matches none of the configured secrets.
        SignatureMismatch => SIGNATURE_MISMATCH,
        /// The request target has a second `?`: what follows it is not signed (by the toolkit's
        /// rule) and would reach the handler unverified.
        UnsignedTarget => TARGET_UNSIGNED,
        /// `x-contentful-signed-headers` lists more names than
        /// [`MAX_SIGNED_HEADERS`](super::MAX_SIGNED_HEADERS).
        TooManySignedHeaders => SIGNED_HEADERS_TOO_MANY,
        /// A signed header's value holds `;` followed by a signed name and `:`: it could move a
        /// boundary of the canonical string, so the signature could stand for another set of
        /// headers (another space, user or time). The toolkit accepts it; we refuse it.
        AmbiguousHeader => SIGNED_HEADER_AMBIGUOUS,
        /// The request is authentic but of a kind this verifier does not take
        /// ([`RequestVerifier::with_kinds`](super::RequestVerifier::with_kinds)): a frontend-signed request on a
        /// route for events and webhooks, for instance.
        KindNotAllowed => REQUEST_KIND_NOT_ALLOWED,
        /// The signed `x-contentful-space-id` and the space of the signed `x-contentful-crn`
        /// differ: the request names two tenants.
        ContextConflict => CONTEXT_CONFLICT,
    }
}
