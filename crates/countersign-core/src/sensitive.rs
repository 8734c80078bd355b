//! Headers that carry secrets: marked sensitive wherever a request passes, so that tracing
//! layers that print headers redact them.

use crate::{contentful, contentstack, session};

/// Headers that carry secrets, signatures or sessions: every layer marks them sensitive, so
/// that tracing layers that print headers redact them.
pub const SENSITIVE_HEADERS: [&str; 8] = [
    "authorization",
    "cookie",
    "set-cookie",
    session::CSRF_HEADER,
    contentful::SIGNATURE,
    contentstack::RSA_SIGNATURE_HEADER,
    contentstack::HMAC_SIGNATURE_HEADER,
    contentstack::LEGACY_SIGNATURE_HEADER,
];

/// Marks the [`SENSITIVE_HEADERS`] of `headers` sensitive.
pub fn mark_sensitive(headers: &mut http::HeaderMap) {
    for name in SENSITIVE_HEADERS {
        if let http::header::Entry::Occupied(mut entry) = headers.entry(name) {
            entry.iter_mut().for_each(|value| value.set_sensitive(true));
        }
    }
}
