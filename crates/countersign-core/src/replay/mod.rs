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
//! # Every key is scoped to its provider, its app and its tenant
//!
//! An app is installed by strangers, and every one of them can make the provider sign
//! requests for their own installation. So a key also holds:
//!
//! - the provider (its domain above);
//! - a namespace, the app: the Contentstack app uid given to
//!   [`Tenancy::with_app_uid`](crate::contentstack::Tenancy::with_app_uid) by default, or one
//!   set with `WebhookVerifier::with_namespace` or `contentful::RequestVerifier::with_namespace` (your
//!   app definition id). Two apps that share one store never share a key when each has one. It
//!   comes from configuration only, never from a request;
//! - the tenant: the stack (`api_key`) of a Contentstack delivery, the signed space of a
//!   Contentful request (or, where only a CRN is signed, the CRN's space);
//! - for Contentful, the [kind](crate::contentful::RequestKind) of request: a key that a user
//!   signed through the app frontend never meets one of an app event or a webhook.
//!
//! A tenant who learns or picks another's idempotency key or body therefore reaches only its
//! own keys. [`ReplayKey::partition`] names the provider, namespace and tenant alone, and
//! [`MemoryStore`] shares its room by it, so that no tenant can fill the store for the others.
//!
//! # Stores
//!
//! A [`ReplayStore`] remembers deliveries by key: claimed under a short lease while a handler
//! works on one, then done for the delivery's window. [`MemoryStore`] is the one-process store;
//! the `countersign` crate adds a Redis store and the Tower layer that drives either. A store
//! of your own implements the trait here, without a web framework.

mod memory;
mod protocol;
mod store;

use std::fmt;

pub use memory::{BYTES_PER_ENTRY, DEFAULT_CAPACITY_BYTES, FullPolicy, MemoryStore};
pub use protocol::{SPENDING_LEASE, claim, spend};
pub use store::{BoxReplayStore, Claim, Owner, ReplayStore, StoreError, StoreErrorKind};

/// How long a remembered delivery (or spent app-token) outlives the window in which its
/// signature is acceptable by default: a minute, for clocks that differ and answers that come
/// late.
pub const DEFAULT_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// The header on the acknowledgement of a duplicate (`duplicate`): the delivery was handled
/// before and was not handled again.
pub const REPLAY_HEADER: &str = "x-countersign-replay";

use crate::crypto::sha256;

/// A digest that identifies one verified delivery; see the [module docs](self) for what it
/// is derived from. Its hex form ([`Display`](fmt::Display)) is the delivery's id: stable
/// across retries, instances and restarts.
///
/// Every key is scoped: it is derived from the provider, a namespace (by default the app) and
/// the tenant (a stack, a space) as well as from the delivery, so that keys of two apps, two
/// tenants or two kinds of request never meet. [`partition`](Self::partition) names the
/// provider, namespace and tenant alone, for stores that share their room fairly among tenants.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayKey {
    digest: [u8; 32],
    partition: u64,
}

/// Whose a delivery is: the provider's domain, the namespace (the app) and the tenant. The
/// parts of a replay key that are not the delivery itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scope<'a> {
    /// The namespace: the app, from configuration only.
    pub(crate) namespace: Option<&'a str>,
    /// The tenant: a stack's `api_key`, a Contentful space.
    pub(crate) tenant: Option<&'a str>,
}

impl ReplayKey {
    /// The key of `parts`, under a `domain` that keeps keys of different kinds apart, scoped to
    /// a namespace and a tenant. Every part is length-prefixed, so that no two lists of parts
    /// give one input.
    pub(crate) fn derive(domain: &str, scope: Scope<'_>, parts: &[&[u8]]) -> Self {
        let optional = |part: Option<&str>| -> [u8; 1] { [u8::from(part.is_some())] };
        let ns = scope.namespace.unwrap_or_default().as_bytes();
        let tenant = scope.tenant.unwrap_or_default().as_bytes();
        let scoped = [
            domain.as_bytes(),
            &optional(scope.namespace),
            ns,
            &optional(scope.tenant),
            tenant,
        ];
        let partition = sha256(&length_prefixed(&scoped));
        let all: Vec<&[u8]> = scoped.iter().chain(parts).copied().collect();
        Self {
            digest: sha256(&length_prefixed(&all)),
            partition: u64::from_le_bytes(partition[..8].try_into().unwrap_or_default()),
        }
    }

    /// A Contentstack delivery, from the SHA-256 of its verified body (the same digest the
    /// signature check used, so the body is hashed once).
    pub(crate) fn contentstack_delivery(scope: Scope<'_>, body_sha256: &[u8; 32]) -> Self {
        Self::derive("contentstack-delivery", scope, &[body_sha256])
    }

    /// A Contentful delivery of `kind` that carries a signed idempotency key.
    pub(crate) fn contentful_idempotency_key(scope: Scope<'_>, kind: &str, key: &str) -> Self {
        Self::derive(
            "contentful-idempotency-key",
            scope,
            &[kind.as_bytes(), key.as_bytes()],
        )
    }

    /// A Contentful request of `kind` without a signed idempotency key: its verified HMAC.
    pub(crate) fn contentful_message(scope: Scope<'_>, kind: &str, mac: &[u8]) -> Self {
        Self::derive("contentful-message", scope, &[kind.as_bytes(), mac])
    }

    /// A spent app-token (single use, [`Sessions::open_once`](crate::session::Sessions::open_once)),
    /// in the partition of its tenant.
    pub(crate) fn app_token(tenant: &str, token: &str) -> Self {
        let scope = Scope {
            namespace: None,
            tenant: Some(tenant),
        };
        Self::derive("contentstack-app-token", scope, &[token.as_bytes()])
    }

    /// A key from a digest computed elsewhere (a custom verification, tests), in partition 0.
    #[must_use]
    pub fn from_bytes(digest: [u8; 32]) -> Self {
        Self {
            digest,
            partition: 0,
        }
    }

    /// The same digest in another partition (a custom store's tests, a custom verification
    /// that knows its tenant).
    #[must_use]
    pub fn in_partition(self, partition: u64) -> Self {
        Self { partition, ..self }
    }

    /// The digest.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Which provider, namespace and tenant the delivery belongs to, as a number: equal for
    /// every delivery of one tenant of one app, and (but for a 2^-64 chance) different across
    /// them. What a store shares its room by.
    #[must_use]
    pub fn partition(&self) -> u64 {
        self.partition
    }

    /// The digest in lower-case hex (64 characters): the delivery's id, and the store's key.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.digest)
    }
}

/// `parts`, each after its length (8 bytes, little-endian).
fn length_prefixed(parts: &[&[u8]]) -> Vec<u8> {
    let mut input = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        input.extend_from_slice(&(part.len() as u64).to_le_bytes());
        input.extend_from_slice(part);
    }
    input
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
