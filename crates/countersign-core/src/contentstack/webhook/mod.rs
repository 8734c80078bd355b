//! Verifying a webhook delivery: signature (RSA or HMAC), then freshness, then whose it is.
//!
//! - `verifier`: [`WebhookVerifier`], its settings and the one entry point,
//!   [`verify`](WebhookVerifier::verify);
//! - `headers`: the two signature headers, parsed;
//! - `envelope`: the body's top-level fields, read, and built the way Contentstack builds them;
//! - `verified`: [`VerifiedWebhook`], what a verified delivery proved.

mod envelope;
mod headers;
mod hmac;
mod verified;
mod verifier;

use std::time::Duration;

use super::SaltLength;

pub use envelope::{Envelope, WebhookBody, triggered_at};
pub use verified::VerifiedWebhook;
pub use verifier::WebhookVerifier;

/// `X-Contentstack-Request-Signature`: `v1=<base64 RSA-PSS signature>[,v1=...]`.
pub const RSA_SIGNATURE_HEADER: &str = "x-contentstack-request-signature";
/// `x-contentstack-hmac-signature`: `t=<unix seconds>,v1=<hex>[,v1=<hex>]`.
pub const HMAC_SIGNATURE_HEADER: &str = "x-contentstack-hmac-signature";
/// `X-Contentstack-Signature`: the deprecated signature (40 hex digits), never trusted.
pub const LEGACY_SIGNATURE_HEADER: &str = "x-contentstack-signature";

/// Contentstack's documented retry schedule: after a failed attempt (a non-2xx answer, or none
/// within [`ATTEMPT_TIMEOUT`]) it retries four times, about this long after each failure.
pub const RETRY_SCHEDULE: [Duration; 4] = [
    Duration::from_secs(5),
    Duration::from_secs(25),
    Duration::from_secs(125),
    Duration::from_secs(625),
];
/// How long Contentstack waits for an answer to one attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The latest the last automatic retry arrives after the event, should Contentstack not
/// refresh `triggered_at` (or `t`) on a retry (undocumented either way): the four intervals of
/// [`RETRY_SCHEDULE`] plus five attempts that each waited [`ATTEMPT_TIMEOUT`], 930 s.
pub const LAST_RETRY_AFTER: Duration = {
    let mut total = ATTEMPT_TIMEOUT.saturating_mul(RETRY_SCHEDULE.len() as u32 + 1);
    let mut retry = 0;
    while retry < RETRY_SCHEDULE.len() {
        total = total.saturating_add(RETRY_SCHEDULE[retry]);
        retry += 1;
    }
    total
};
/// How old a delivery may be by default: 30 minutes, [`LAST_RETRY_AFTER`] with a margin of
/// nearly as much again, so that no automatic retry of a delivery is refused as stale.
///
/// A long tolerance is safe with a replay guard, which remembers every delivery for the whole
/// window and answers a replay as a duplicate; without one, a captured delivery can be
/// replayed for as long as the tolerance.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(30 * 60);
/// How far ahead of our clock a signed time may be by default: 60 seconds.
pub const DEFAULT_FUTURE_SKEW: Duration = Duration::from_secs(60);

/// At most this many `v1` elements are tried: each costs cryptography.
pub const MAX_SIGNATURE_ELEMENTS: usize = 4;
/// A longer signature header is refused unread (four RSA-4096 signatures fit easily).
pub const MAX_SIGNATURE_HEADER_LEN: usize = 4096;

/// The `module` of installation events.
pub const INSTALLATION_MODULE: &str = "app_installation";

/// Which signature method a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureMethod {
    /// RSA-PSS, `X-Contentstack-Request-Signature` (the default method, "CS Cert").
    Rsa,
    /// HMAC-SHA256, `x-contentstack-hmac-signature` (the newer, opt-in method).
    Hmac,
}

/// What matched.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifiedBy {
    /// An RSA-PSS signature.
    Rsa {
        /// Which key of the set, counting from 0.
        key_index: usize,
        /// That key's fingerprint.
        key_fingerprint: String,
        /// Which `v1` element of the header, counting from 0.
        element: usize,
        /// The salt length the signature used.
        salt: SaltLength,
    },
    /// An HMAC-SHA256 signature.
    Hmac {
        /// Which configured secret, counting from 0.
        secret_index: usize,
        /// Which `v1` element of the header, counting from 0.
        element: usize,
    },
}
