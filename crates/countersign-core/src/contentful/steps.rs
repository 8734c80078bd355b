//! The checks of [`RequestVerifier::verify`] on a request given as parts, for tools that
//! diagnose a request (the `countersign` command line) and for tests of one rule: a method, a
//! raw target and headers, with the path prefix named outright. None of them gives a
//! [`Verdict`](crate::Verdict): a backend calls [`RequestVerifier::verify`].

use std::time::SystemTime;

use http::{HeaderMap, Method};

use super::{Error, RequestVerifier, VerifiedRequest};

/// The checks of [`RequestVerifier::verify`] on parts. See the [module docs](self).
pub trait RequestSteps {
    /// Verifies a request as it arrived, under the verifier's configured path prefix.
    ///
    /// `target` is the raw request target: path and query exactly as received. `body` is the
    /// raw body; an absent body is an empty one.
    ///
    /// # Errors
    /// An [`Error`] whose [`kind`](Error::kind) says why the request is rejected.
    fn verify_parts(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedRequest, Error>;

    /// [`verify_parts`](Self::verify_parts) under the path prefix `prefix` instead of the
    /// configured one (for instance the one an `X-Forwarded-Prefix` would state).
    ///
    /// # Errors
    /// As [`verify_parts`](Self::verify_parts); a prefix that is not of the form
    /// `/segment[/segment...]` is ignored.
    fn verify_parts_with_prefix(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
        prefix: Option<&str>,
    ) -> Result<VerifiedRequest, Error>;
}

impl RequestSteps for RequestVerifier {
    fn verify_parts(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedRequest, Error> {
        self.check_parts(method, target, headers, body, now, None)
    }

    fn verify_parts_with_prefix(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
        prefix: Option<&str>,
    ) -> Result<VerifiedRequest, Error> {
        self.check_parts(method, target, headers, body, now, prefix)
    }
}
