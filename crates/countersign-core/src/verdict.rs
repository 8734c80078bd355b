//! One verdict per verified request: what a provider's entry point returns, and all that the
//! layers above it hand on.
//!
//! Each provider has one entry point that takes the request (its parts and its buffered body),
//! the keys, secrets or session keys, and the current time:
//!
//! | provider | entry point | facts |
//! |---|---|---|
//! | Contentstack webhooks | [`WebhookVerifier::verify`](crate::contentstack::WebhookVerifier::verify) | [`VerifiedWebhook`](crate::contentstack::VerifiedWebhook) |
//! | Contentful requests | [`RequestVerifier::verify`](crate::contentful::RequestVerifier::verify) | [`VerifiedRequest`](crate::contentful::VerifiedRequest) |
//!
//! The [`Verdict`] holds the facts, the bytes the handler must read (the canonical ones when
//! Contentstack's JSON fallback matched), what identifies the delivery and for how long its
//! signature stays acceptable (what a replay store needs), and the tenant it belongs to.

use std::ops::Deref;
use std::time::Duration;

use bytes::Bytes;

use crate::replay::ReplayKey;

/// A verified request: its facts, the bytes a handler must read, its delivery identity and
/// window, and its tenant. Derefs to the facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<F> {
    facts: F,
    body: Bytes,
    window: Option<Duration>,
}

impl<F: Facts> Verdict<F> {
    pub(crate) fn new(facts: F, body: Bytes, window: Option<Duration>) -> Self {
        Self {
            facts,
            body,
            window,
        }
    }

    /// What the signature proved.
    #[must_use]
    pub fn facts(&self) -> &F {
        &self.facts
    }

    /// The bytes the handler must read: the verified ones (never the raw ones when a
    /// re-serialization is what verified).
    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// What identifies the delivery: the same for every form in which the provider sends it
    /// again ([`crate::replay`]).
    #[must_use]
    pub fn replay_key(&self) -> ReplayKey {
        self.facts.replay_key()
    }

    /// How long the signature stays acceptable, so how long a replay store must remember the
    /// delivery. `None`: forever (Contentful with the TTL off).
    #[must_use]
    pub fn window(&self) -> Option<Duration> {
        self.window
    }

    /// The tenant the delivery belongs to: the stack (`api_key`) of a Contentstack webhook, the
    /// space of a Contentful request; `None` when the request names none.
    #[must_use]
    pub fn tenant(&self) -> Option<&str> {
        self.facts.tenant()
    }

    /// The facts and the body, apart.
    #[must_use]
    pub fn into_parts(self) -> (F, Bytes) {
        (self.facts, self.body)
    }
}

impl<F> Deref for Verdict<F> {
    type Target = F;

    fn deref(&self) -> &F {
        &self.facts
    }
}

/// What every provider's verified facts say: the delivery's identity and its tenant.
/// Implemented by this crate's verified types only.
pub trait Facts: sealed::Sealed {
    /// What identifies the delivery.
    fn replay_key(&self) -> ReplayKey;
    /// The tenant: a stack's `api_key`, a Contentful space id.
    fn tenant(&self) -> Option<&str>;
}

pub(crate) mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::contentstack::VerifiedWebhook {}
    impl Sealed for crate::contentful::VerifiedRequest {}
}
