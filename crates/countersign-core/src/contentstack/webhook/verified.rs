//! [`VerifiedWebhook`]: what a verified delivery proved.

use std::sync::Arc;
use std::time::SystemTime;

use super::envelope::Envelope;
use super::{INSTALLATION_MODULE, VerifiedBy};
use crate::contentstack::{Event, Module};
use crate::replay::{ReplayKey, Scope};

/// A delivery whose signature and freshness verified: what it proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedWebhook {
    pub(super) verified_by: VerifiedBy,
    pub(super) reencoded: bool,
    pub(super) canonical_body: Option<Vec<u8>>,
    pub(super) signed_at: SystemTime,
    pub(super) envelope: Envelope,
    /// The SHA-256 of the bytes that verified: what identifies the delivery within its scope.
    pub(super) body_sha256: [u8; 32],
    /// The namespace of the replay key, which is derived when asked for.
    pub(super) namespace: Option<Arc<str>>,
}

impl VerifiedWebhook {
    /// What matched: key, element and salt length, or secret.
    #[must_use]
    pub fn verified_by(&self) -> &VerifiedBy {
        &self.verified_by
    }

    /// What identifies this delivery (replay protection, idempotent writes): the digest of the
    /// verified body, the same for every form in which Contentstack may send the delivery
    /// again, scoped to the namespace (the app) and the stack. The rules are in
    /// [`crate::replay`].
    #[must_use]
    pub fn replay_key(&self) -> ReplayKey {
        let scope = Scope {
            namespace: self.namespace.as_deref(),
            tenant: self.envelope.api_key.as_deref(),
        };
        ReplayKey::contentstack_delivery(scope, &self.body_sha256)
    }

    /// The delivery's id: [`replay_key`](Self::replay_key) in lower-case hex, 64 characters.
    #[must_use]
    pub fn delivery_id(&self) -> String {
        self.replay_key().to_hex()
    }

    /// When the delivery was signed: `triggered_at` (RSA) or `t` (HMAC).
    #[must_use]
    pub fn signed_at(&self) -> SystemTime {
        self.signed_at
    }

    /// Whether the signature matched only after JSON re-serialization (the fallback).
    #[must_use]
    pub fn reencoded(&self) -> bool {
        self.reencoded
    }

    /// The canonical bytes the fallback verified, when it was needed and they were not yet
    /// moved into a [`Verdict`](crate::Verdict) (whose [`body`](crate::Verdict::body) is then
    /// what a handler reads).
    #[must_use]
    pub fn canonical_body(&self) -> Option<&[u8]> {
        self.canonical_body.as_deref()
    }

    /// `triggered_at`, as sent.
    #[must_use]
    pub fn triggered_at(&self) -> Option<&str> {
        self.envelope.triggered_at.as_deref()
    }

    /// `module`, typed: [`Module::Entry`], [`Module::Asset`], [`Module::AppInstallation`], ...
    /// (any other name as [`Module::Other`]). `None` when the body has no `module` string.
    #[must_use]
    pub fn module(&self) -> Option<Module> {
        self.envelope.module.as_deref().map(Module::parse)
    }

    /// `event`, typed: [`Event::Create`], [`Event::Publish`], [`Event::Install`], ... (any
    /// other name as [`Event::Other`]). `None` when the body has no `event` string.
    #[must_use]
    pub fn event(&self) -> Option<Event> {
        self.envelope.event.as_deref().map(Event::parse)
    }

    /// `api_key`: the stack.
    #[must_use]
    pub fn api_key(&self) -> Option<&str> {
        self.envelope.api_key.as_deref()
    }

    /// Whether this is an installation event (`module` `app_installation`: `install`,
    /// `upgrade`, `uninstall`, ...), which says which app it is for.
    #[must_use]
    pub fn is_installation_event(&self) -> bool {
        self.envelope.module.as_deref() == Some(INSTALLATION_MODULE)
    }

    /// `data.app_installation.app_uid`: the app an installation event is for.
    #[must_use]
    pub fn installation_app_uid(&self) -> Option<&str> {
        self.envelope.installation_app_uid.as_deref()
    }
}

impl crate::verdict::Facts for VerifiedWebhook {
    fn replay_key(&self) -> ReplayKey {
        VerifiedWebhook::replay_key(self)
    }

    fn tenant(&self) -> Option<&str> {
        self.api_key()
    }
}
