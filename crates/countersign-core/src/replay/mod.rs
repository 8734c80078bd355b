//! What identifies a delivery: the key of replay protection, and the id a handler makes its own
//! writes idempotent with.
//!
//! A provider may send one delivery several times, and each time in another form. The key is
//! derived from what the signature proves about the delivery, never from the bytes of the
//! signature itself, so that every form of one delivery maps to one key:
//!
//! | provider | the key is the digest of | forms that share it |
//! |---|---|---|
//! | Contentstack (RSA and HMAC) | the verified body: the raw bytes, or the canonical bytes when the JSON fallback verified | re-signed (RSA-PSS is randomized), the other salt length, more, fewer or reordered `v1` elements, padded or unpadded base64, RSA or HMAC, a fresh HMAC `t` |
//! | Contentful, with a signed `x-contentful-idempotency-key` | that key | every retry, each signed afresh |
//! | Contentful, without one | the verified HMAC, which is a function of the signed message | the same signed message whatever its unsigned headers, header order, list order or case |
//!
//! Why these:
//!
//! - Contentstack's body holds `triggered_at` (milliseconds) and the event's data, and is built
//!   once per event: two deliveries with the same body are one event. The signature is not an
//!   identity: RSA-PSS gives new bytes at every signing, and an HMAC header may carry one or two
//!   `v1` values during a rotation.
//! - Contentful retries a webhook or an app event with a fresh timestamp and signature, but the
//!   same idempotency key; where that key is signed, it is the delivery. Where no idempotency
//!   key is signed (app actions, frontend-signed requests), nothing says that two requests
//!   signed at different milliseconds are one delivery: two identical calls a user made twice
//!   are two calls. What is certain is that a request is the message its signature covers
//!   (method, normalized target, the signed headers with the timestamp, the body), and the
//!   HMAC is a deterministic function of that message under the secret: every copy of the
//!   message carries the same HMAC, and nobody without the secret can make another.
//!
//! Keys are derived only from verified input, so an attacker cannot choose one, and every key
//! is put under a domain of its own so that keys of different kinds never meet.
//!
//! # Stores
//!
//! A [`ReplayStore`] remembers deliveries by key: claimed under a short lease while a handler
//! works on one, then done for the delivery's window. [`MemoryStore`] is the one-process store;
//! the `countersign` crate adds a Redis store and the Tower layer that drives either. A store
//! of your own implements the trait here, without a web framework.

mod memory;
mod store;

use std::fmt;

pub use memory::{FullPolicy, MemoryStore};
pub use store::{Claim, Owner, ReplayStore, StoreError, StoreErrorKind};

/// The header on the acknowledgement of a duplicate (`duplicate`): the delivery was handled
/// before and was not handled again.
pub const REPLAY_HEADER: &str = "x-countersign-replay";

use crate::crypto::sha256;

/// A digest that identifies one verified delivery; see the [module docs](self) for what it
/// is derived from. Its hex form ([`Display`](fmt::Display)) is the delivery's id: stable
/// across retries, instances and restarts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayKey([u8; 32]);

impl ReplayKey {
    /// The key of `parts`, under a `domain` that keeps keys of different kinds apart.
    pub(crate) fn derive(domain: &str, parts: &[&[u8]]) -> Self {
        let mut input =
            Vec::with_capacity(domain.len() + 1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
        input.extend_from_slice(domain.as_bytes());
        for part in parts {
            input.push(0);
            input.extend_from_slice(part);
        }
        Self(sha256(&input))
    }

    /// A Contentstack delivery, from the SHA-256 of its verified body (the same digest the
    /// signature check used, so the body is hashed once).
    pub(crate) fn contentstack_delivery(body_sha256: &[u8; 32]) -> Self {
        Self::derive("contentstack-delivery", &[body_sha256])
    }

    /// A Contentful delivery that carries a signed idempotency key.
    pub(crate) fn contentful_idempotency_key(key: &str) -> Self {
        Self::derive("contentful-idempotency-key", &[key.as_bytes()])
    }

    /// A Contentful request without a signed idempotency key: its verified HMAC.
    pub(crate) fn contentful_message(mac: &[u8]) -> Self {
        Self::derive("contentful-message", &[mac])
    }

    /// A spent app-token (single use, [`Sessions::open_once`](crate::session::Sessions::open_once)).
    pub(crate) fn app_token(token: &str) -> Self {
        Self::derive("contentstack-app-token", &[token.as_bytes()])
    }

    /// A key from a digest computed elsewhere (a custom verification, tests).
    #[must_use]
    pub fn from_bytes(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The digest.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest in lower-case hex (64 characters): the delivery's id, and the store's key.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayKey({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
