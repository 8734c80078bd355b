//! [`ContentstackWebhookLayer`]: verifies a Contentstack webhook delivery before the handler
//! runs.
//!
//! The layer reads the body (up to a limit), verifies the RSA signature with keys from a
//! [`KeySource`] (or the HMAC signature with configured secrets), checks `triggered_at` (or
//! `t`) against the tolerance, and hands the verdict on as a
//! [`ContentstackWebhook`](crate::ContentstackWebhook). When the JSON fallback matched, the
//! handler receives the canonical bytes, not the raw ones.
//!
//! A signature that fails against the cached keys makes the source look for a rotated key once
//! (rate-limited by the source); with no key at all, the answer is 503 so that Contentstack
//! retries.
//!
//! ```
//! use axum::{Router, routing::post};
//! use countersign::contentstack::{StaticKeys, WebhookVerifier};
//! use countersign::{ContentstackWebhook, ContentstackWebhookLayer};
//!
//! # fn main() -> Result<(), countersign::ConfigError> {
//! # let pem = include_str!("../../countersign-core/tests/data/keys/contentstack-a.public.pem");
//! let keys = StaticKeys::parse(pem)?; // or WellKnownKeys::for_region(&region)
//! let app: Router = Router::new()
//!     .route("/webhooks/contentstack", post(|webhook: ContentstackWebhook| async move {
//!         format!("{:?} {:?}", webhook.module(), webhook.event())
//!     }))
//!     .layer(ContentstackWebhookLayer::new(WebhookVerifier::new(), keys));
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use countersign_core::contentstack::{
    ErrorKind, KeySet, KeySource, KeyUnavailable, SignatureMethod, VerifiedWebhook, WebhookVerifier,
};
use http::{HeaderMap, Request};

use crate::body::{BodyLimits, buffer, replace_body};
use crate::guard::{Clock, Guard, GuardLayer, ReadsBody};
use crate::replay::ReplayIdentity;
use crate::{Rejection, VerifiedBody};

/// Verifies Contentstack webhook signatures. See the [module docs](self).
pub type ContentstackWebhookLayer<K> = GuardLayer<ContentstackGuard<K>>;

/// The check [`ContentstackWebhookLayer`] runs.
#[derive(Clone, Debug)]
pub struct ContentstackGuard<K> {
    verifier: Arc<WebhookVerifier>,
    keys: K,
    limits: BodyLimits,
    clock: Clock,
}

/// A key source with no key: for a layer that verifies HMAC-signed deliveries only.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoKeys;

impl KeySource for NoKeys {
    fn keys(&self) -> impl Future<Output = Result<Arc<KeySet>, KeyUnavailable>> + Send {
        std::future::ready(Err(KeyUnavailable::new(
            "no Contentstack key source is configured",
        )))
    }
}

impl<K: KeySource + Clone> ContentstackWebhookLayer<K> {
    /// A layer verifying with `verifier` (methods, tolerance, skew, JSON fallback) and RSA keys
    /// from `keys`.
    #[must_use]
    pub fn new(verifier: WebhookVerifier, keys: K) -> Self {
        Self::from_guard(ContentstackGuard {
            verifier: Arc::new(verifier),
            keys,
            limits: BodyLimits::default(),
            clock: Clock::system(),
        })
    }
}

impl ContentstackWebhookLayer<NoKeys> {
    /// A layer for HMAC-signed deliveries only (`verifier` from [`WebhookVerifier::hmac_only`]).
    #[must_use]
    pub fn hmac_only(verifier: WebhookVerifier) -> Self {
        Self::new(verifier.with_rsa(false), NoKeys)
    }
}

impl<K> ReadsBody for ContentstackGuard<K> {
    fn body_limits(&mut self) -> &mut BodyLimits {
        &mut self.limits
    }

    fn clock(&mut self) -> &mut Clock {
        &mut self.clock
    }
}

impl<K: KeySource + Clone> ContentstackGuard<K> {
    async fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<VerifiedWebhook, Rejection> {
        let now = self.clock.now();
        if self.verifier.method(headers) != Some(SignatureMethod::Rsa) {
            return Ok(self.verifier.verify(headers, body, None, now)?);
        }
        let keys = self.keys.keys().await.map_err(|unavailable| {
            Rejection::from(countersign_core::contentstack::Error::from(unavailable))
        })?;
        match self.verifier.verify(headers, body, Some(&keys), now) {
            Err(error) if error.kind() == ErrorKind::SignatureMismatch => {
                match self.keys.refresh(&keys).await {
                    Some(fresh) => Ok(self.verifier.verify(headers, body, Some(&fresh), now)?),
                    None => Err(error.into()),
                }
            }
            result => Ok(result?),
        }
    }
}

impl<K: KeySource + Clone> Guard for ContentstackGuard<K> {
    async fn check(&self, request: Request<Body>) -> Result<Request<Body>, Rejection> {
        let (mut request, mut body) = buffer(request, self.limits).await?;
        let verified = self.verify(request.headers(), &body).await?;
        if let Some(canonical) = verified.canonical_body() {
            body = Bytes::copy_from_slice(canonical);
            replace_body(&mut request, body.clone());
        }
        request.extensions_mut().insert(ReplayIdentity {
            key: verified.replay_key(),
            window: Some(self.verifier.acceptance_window()),
        });
        request.extensions_mut().insert(Arc::new(verified));
        request.extensions_mut().insert(VerifiedBody(body));
        Ok(request)
    }
}
