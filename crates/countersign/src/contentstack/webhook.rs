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
//! # Only this app's deliveries
//!
//! One Contentstack key per region signs every customer's webhooks, so a valid signature does
//! not say the delivery is for you: anyone can point a webhook of their own stack at your
//! backend. [`with_tenancy`](GuardLayer::with_tenancy) adds the check that it is
//! ([`Tenancy`]): installation events only of your `app_uid`, every other delivery only from
//! your stacks (a static [`StackAllowlist`](countersign_core::contentstack::StackAllowlist), or
//! an async look-up in your own installation records). A delivery that is not yours is answered
//! 403 (`app_uid_mismatch`, `stack_not_allowed`) and never reaches the replay store or the
//! handler; a look-up that fails is answered 503 (`tenant_check_unavailable`), so that
//! Contentstack retries.
//!
//! # Freshness and replays
//!
//! The default tolerance (30 minutes,
//! [`DEFAULT_TOLERANCE`](countersign_core::contentstack::DEFAULT_TOLERANCE)) covers
//! Contentstack's last automatic retry should it not refresh `triggered_at`. With a
//! [`ReplayGuardLayer`](crate::replay::ReplayGuardLayer) after this layer, a long tolerance is
//! safe: every delivery is remembered for the whole window, and a replay is answered as a
//! duplicate. Without one, a captured delivery can be replayed for as long as the tolerance:
//! shorten it, or add the guard.
//!
//! ```
//! use axum::{Router, routing::post};
//! use countersign::contentstack::{StaticKeys, WebhookVerifier};
//! use countersign::{ContentstackWebhook, ContentstackWebhookLayer};
//!
//! # fn main() -> Result<(), countersign::ConfigError> {
//! # let pem = include_str!("../../../countersign-core/tests/data/keys/contentstack-a.public.pem");
//! let keys = StaticKeys::parse(pem)?; // or WellKnownKeys::for_region(&region)
//! let app: Router = Router::new()
//!     .route("/webhooks/contentstack", post(|webhook: ContentstackWebhook| async move {
//!         format!("{:?} {:?}", webhook.module(), webhook.event())
//!     }))
//!     .layer(ContentstackWebhookLayer::new(WebhookVerifier::new(), keys));
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use axum::body::Body;
use countersign_core::contentstack::{
    AnyStack, KeySource, NoKeys, StackCheck, Tenancy, WebhookVerifier,
};
use countersign_core::{ConfigError, ConfigErrorKind};
use http::Request;

use crate::body::{BodyLimits, buffer, check_declared_length, hand_on};
use crate::extract::Verified;
use crate::guard::{Clock, Guard, GuardLayer, ReadsBody, ReadsClock, sealed};
use crate::metrics;
use crate::problem::Rejection;
use countersign_core::Provider;

/// Verifies Contentstack webhook signatures, and optionally that the delivery is for this app
/// and its stacks. See the [module docs](self).
pub type ContentstackWebhookLayer<K, S = AnyStack> = GuardLayer<ContentstackWebhookGuard<K, S>>;

/// The check [`ContentstackWebhookLayer`] runs: the core's
/// [`WebhookVerifier::verify`] on the buffered request.
#[derive(Debug)]
pub struct ContentstackWebhookGuard<K, S = AnyStack> {
    verifier: Arc<WebhookVerifier>,
    keys: K,
    tenancy: Arc<Tenancy<S>>,
    limits: BodyLimits,
    clock: Clock,
}

impl<K: Clone, S> Clone for ContentstackWebhookGuard<K, S> {
    fn clone(&self) -> Self {
        Self {
            verifier: Arc::clone(&self.verifier),
            keys: self.keys.clone(),
            tenancy: Arc::clone(&self.tenancy),
            limits: self.limits,
            clock: self.clock.clone(),
        }
    }
}

impl<K: KeySource + Clone> ContentstackWebhookLayer<K> {
    /// A layer verifying with `verifier` (methods, tolerance, skew, JSON fallback) and RSA keys
    /// from `keys`.
    #[must_use]
    pub fn new(verifier: WebhookVerifier, keys: K) -> Self {
        Self::from_guard(ContentstackWebhookGuard {
            verifier: Arc::new(verifier),
            keys,
            tenancy: Arc::new(Tenancy::new()),
            limits: BodyLimits::default(),
            clock: Clock::system(),
        })
    }
}

impl ContentstackWebhookLayer<NoKeys> {
    /// A layer for HMAC-signed webhooks only: no public keys, the RSA method off. A delivery
    /// signed with RSA is answered 401 `signature_method_not_configured` (never 503, which
    /// would have Contentstack retry what will never verify).
    ///
    /// ```
    /// use countersign::ContentstackWebhookLayer;
    /// use countersign::contentstack::{HmacSecret, WebhookVerifier};
    ///
    /// fn layer() -> Result<ContentstackWebhookLayer<countersign::NoKeys>, Box<dyn std::error::Error>> {
    ///     // The webhook's secret, bound to the stack whose webhook it is: a delivery that
    ///     // names another stack is never verified with it.
    ///     let secret = HmacSecret::new(std::env::var("CONTENTSTACK_HMAC_SECRET")?)?;
    ///     let verifier = WebhookVerifier::new()
    ///         .with_stack_hmac_secret(std::env::var("CONTENTSTACK_API_KEY")?, secret);
    ///     Ok(ContentstackWebhookLayer::hmac(verifier)?)
    /// }
    /// ```
    ///
    /// # Errors
    /// [`ConfigErrorKind::NoSecrets`] when `verifier` has
    /// no HMAC secret: such a layer would refuse every delivery.
    pub fn hmac(verifier: WebhookVerifier) -> Result<Self, ConfigError> {
        if !verifier.has_hmac_secrets() {
            return Err(ConfigError::new(
                ConfigErrorKind::NoSecrets,
                "an HMAC-only layer needs a secret: WebhookVerifier::with_stack_hmac_secret(api_key, secret)",
            ));
        }
        Ok(Self::new(verifier.with_rsa(false), NoKeys))
    }
}

impl<K: KeySource + Clone, S> ContentstackWebhookLayer<K, S> {
    /// Accepts only deliveries for this app and its stacks (see the [module docs](self)):
    /// others are answered 403 before the replay guard and the handler.
    #[must_use]
    pub fn with_tenancy<T: StackCheck>(
        self,
        tenancy: Tenancy<T>,
    ) -> ContentstackWebhookLayer<K, T> {
        self.map_guard(|guard| ContentstackWebhookGuard {
            verifier: guard.verifier,
            keys: guard.keys,
            tenancy: Arc::new(tenancy),
            limits: guard.limits,
            clock: guard.clock,
        })
    }
}

impl<K, S> sealed::Sealed for ContentstackWebhookGuard<K, S> {}

impl<K, S> ReadsBody for ContentstackWebhookGuard<K, S> {
    fn body_limits(&mut self) -> &mut BodyLimits {
        &mut self.limits
    }
}

impl<K, S> ReadsClock for ContentstackWebhookGuard<K, S> {
    fn clock(&mut self) -> &mut Clock {
        &mut self.clock
    }
}

impl<K: KeySource + Clone, S: StackCheck> Guard for ContentstackWebhookGuard<K, S> {
    const ASYNC: bool = true;

    fn check_head(&self, request: &mut Request<Body>) -> Result<(), Rejection> {
        check_declared_length(request.headers(), self.limits).inspect_err(|rejection| {
            metrics::rejected(Provider::Contentstack.as_str(), rejection.code())
        })
    }

    async fn check(&self, request: Request<Body>) -> Result<Request<Body>, Rejection> {
        let provider = Provider::Contentstack.as_str();
        let (parts, body) = buffer(request, self.limits)
            .await
            .inspect_err(|rejection| metrics::rejected(provider, rejection.code()))?;
        let (timer, now) = (metrics::Timer::start(), self.clock.now());
        let verdict = (self.verifier)
            .verify(&parts.headers, body, &self.keys, &self.tenancy, now)
            .await
            .map_err(Rejection::from);
        metrics::verification(provider, verdict.as_ref().err().map(Rejection::code), timer);
        let verdict = verdict?;
        metrics::contentstack_match(verdict.verified_by());
        Ok(hand_on(parts, Verified::Contentstack(Arc::new(verdict))))
    }
}
