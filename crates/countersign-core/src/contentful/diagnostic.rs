//! The checks of [`RequestVerifier::verify`] on a request given as parts, through
//! [`RequestVerifier::diagnose`]: for tools that
//! diagnose a request (the `countersign` command line) and for tests of one rule: a method, a
//! raw target and headers, with the path prefix named outright. None of them gives a
//! [`Verdict`](crate::Verdict): a backend calls [`RequestVerifier::verify`].

use std::time::SystemTime;

use http::{HeaderMap, Method};

use super::{Error, RequestVerifier, VerifiedRequest};

impl RequestVerifier {
    /// The checks of [`verify`](Self::verify) on a request given as parts: see the
    /// [module docs](self).
    #[must_use]
    pub fn diagnose(&self) -> Diagnose<'_> {
        Diagnose { verifier: self }
    }
}

/// The checks of [`RequestVerifier::verify`] on parts ([`RequestVerifier::diagnose`]). See the
/// [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct Diagnose<'v> {
    verifier: &'v RequestVerifier,
}

impl Diagnose<'_> {
    /// Verifies a request as it arrived, under the verifier's configured path prefix.
    ///
    /// `target` is the raw request target: path and query exactly as received. `body` is the
    /// raw body; an absent body is an empty one.
    ///
    /// # Errors
    /// An [`Error`] whose [`kind`](Error::kind) says why the request is rejected.
    pub fn verify_parts(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedRequest, Error> {
        self.verifier
            .check_parts(method, target, headers, body, now, None)
    }

    /// [`verify_parts`](Diagnose::verify_parts) under the path prefix `prefix` instead of the
    /// configured one (for instance the one an `X-Forwarded-Prefix` would state).
    ///
    /// # Errors
    /// As [`verify_parts`](Diagnose::verify_parts); a prefix that is not of the form
    /// `/segment[/segment...]` is ignored.
    pub fn verify_parts_with_prefix(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
        prefix: Option<&str>,
    ) -> Result<VerifiedRequest, Error> {
        self.verifier
            .check_parts(method, target, headers, body, now, prefix)
    }
}
