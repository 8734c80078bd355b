//! The steps of [`WebhookVerifier::verify`], one at a time, through
//! [`WebhookVerifier::diagnose`]: for tools that diagnose a delivery
//! (the `countersign` command line) and for tests of one rule: a method's signature with the
//! keys at hand, then the delivery's time. None of them refreshes keys, checks whose the
//! delivery is ([`Tenancy`](super::Tenancy)) or gives a [`Verdict`](crate::Verdict): a
//! backend calls [`WebhookVerifier::verify`].
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::{Duration, SystemTime};
//! use countersign_core::contentstack::{KeySet, SaltLength, SigningKey, WebhookVerifier};
//! use http::HeaderMap;
//!
//! # let private_pem = include_str!("../../tests/data/keys/contentstack-a.private.pem");
//! let signing_key = SigningKey::from_pem(private_pem)?; // stands in for Contentstack
//! let keys = KeySet::from(signing_key.public_key().clone());
//!
//! let body = br#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","event":"publish","api_key":"blt1","data":{}}"#;
//! let mut headers = HeaderMap::new();
//! headers.insert("x-contentstack-request-signature", signing_key.sign_webhook(body, SaltLength::Digest)?.parse()?);
//!
//! let verifier = WebhookVerifier::new().with_tolerance(Duration::from_secs(300));
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_721_897_330);
//! let webhook = verifier.diagnose().verify_with_keys(&headers, body, Some(&keys), now)?;
//! assert_eq!(webhook.event(), Some(countersign_core::contentstack::Event::Publish(None)));
//! # Ok(())
//! # }
//! ```

use std::time::SystemTime;

use http::HeaderMap;

use super::{Error, KeySet, VerifiedBy, VerifiedWebhook, WebhookVerifier};

impl WebhookVerifier {
    /// The steps of [`verify`](Self::verify), one at a time: see the [module docs](self).
    #[must_use]
    pub fn diagnose(&self) -> Diagnose<'_> {
        Diagnose { verifier: self }
    }
}

/// The steps of [`WebhookVerifier::verify`] ([`WebhookVerifier::diagnose`]). See the
/// [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct Diagnose<'v> {
    verifier: &'v WebhookVerifier,
}

impl Diagnose<'_> {
    /// Verifies a delivery by whichever [`method`](WebhookVerifier::method) applies:
    /// signature, then freshness. `body` is the raw body; `keys` are needed for the RSA
    /// method (`None`: none available yet,
    /// [`ErrorKind::KeyUnavailable`](super::ErrorKind::KeyUnavailable)).
    ///
    /// # Errors
    /// An [`Error`] whose [`kind`](Error::kind) says why.
    pub fn verify_with_keys(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        keys: Option<&KeySet>,
        now: SystemTime,
    ) -> Result<VerifiedWebhook, Error> {
        self.verifier.step_with_keys(headers, body, keys, now)
    }

    /// Verifies an RSA-signed delivery: the signature over the raw body (salt length 32, then
    /// the maximum; then the JSON fallback if on), then `triggered_at`.
    ///
    /// # Errors
    /// An [`Error`] whose [`kind`](Error::kind) says why.
    pub fn verify_rsa(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        keys: &KeySet,
        now: SystemTime,
    ) -> Result<VerifiedWebhook, Error> {
        self.verifier.step_rsa(headers, body, keys, now)
    }

    /// Verifies an HMAC-signed delivery: `v1 = hex(HMAC-SHA256(secret, "<t>.<body>"))` for any
    /// configured secret, then `t` against the tolerance.
    ///
    /// # Errors
    /// An [`Error`] whose [`kind`](Error::kind) says why.
    pub fn verify_hmac(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedWebhook, Error> {
        self.verifier.step_hmac(headers, body, now)
    }

    /// Checks only the RSA signature, not the time: which key, element and salt matched, and
    /// the canonical bytes when the JSON fallback was needed.
    ///
    /// # Errors
    /// [`ErrorKind::MissingSignature`](super::ErrorKind::MissingSignature),
    /// [`ErrorKind::MalformedSignature`](super::ErrorKind::MalformedSignature) or
    /// [`ErrorKind::SignatureMismatch`](super::ErrorKind::SignatureMismatch).
    pub fn rsa_signature(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        keys: &KeySet,
    ) -> Result<(VerifiedBy, Option<Vec<u8>>), Error> {
        self.verifier.step_rsa_signature(headers, body, keys)
    }
}
