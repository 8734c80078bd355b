//! [`ContentfulRequestLayer`]: verifies Contentful's request signature before the handler runs.
//!
//! App events, app actions, webhooks with a signing secret and frontend-signed requests all
//! carry the same signature. The layer reads the body (up to a limit), verifies the signature
//! over the method, the raw request target, the signed headers and the body, and hands the
//! verified facts on as a [`ContentfulRequest`](crate::ContentfulRequest).
//!
//! # Tenants
//!
//! Every user of every space that installed the app can have the app frontend sign a request
//! with the app's secret, with any path, topic and body. So a route that acts on app events or
//! webhooks takes only those kinds ([`RequestVerifier::with_kinds`] with
//! [`RequestKinds::EVENTS`](countersign_core::contentful::RequestKinds::EVENTS)): a
//! frontend-signed request there is answered 403 `request_kind_not_allowed`. A space's webhook
//! secret is bound to its space ([`RequestVerifier::with_space_webhook_secret`]).
//!
//! ```
//! use axum::{Json, Router, routing::post};
//! use countersign::contentful::{RequestKinds, SigningSecret, RequestVerifier};
//! use countersign::{ContentfulRequestLayer, ContentfulRequest};
//!
//! # fn main() -> Result<(), countersign::ConfigError> {
//! let verifier = RequestVerifier::new(SigningSecret::new("a".repeat(64))?)
//!     .with_space_webhook_secret("space-1", SigningSecret::new("b".repeat(64))?)
//!     .with_kinds(RequestKinds::EVENTS);
//! let app: Router = Router::new()
//!     .route("/contentful/events", post(|event: ContentfulRequest, Json(body): Json<serde_json::Value>| async move {
//!         format!("{:?}: {body}", event.topic())
//!     }))
//!     .layer(ContentfulRequestLayer::new(verifier).with_body_limit(1024 * 1024));
//! # Ok(())
//! # }
//! ```
//!
//! Behind a reverse proxy that strips a path prefix, configure it on the verifier
//! ([`RequestVerifier::with_path_prefix`]), or trust `X-Forwarded-Prefix` from your proxies only
//! ([`RequestVerifier::with_forwarded_prefix`]; the layer needs
//! `into_make_service_with_connect_info::<SocketAddr>()` to know the peer).

use std::sync::Arc;

use axum::body::Body;
use countersign_core::contentful::RequestVerifier;
use http::Request;

use crate::body::{BodyLimits, buffer, check_declared_length, hand_on};
use crate::extract::Verified;
use crate::guard::{Clock, Guard, GuardLayer, ReadsBody, ReadsClock, peer_address, sealed};
use crate::metrics;
use crate::problem::Rejection;
use countersign_core::Provider;

/// Verifies Contentful request signatures. See the [module docs](self).
pub type ContentfulRequestLayer = GuardLayer<ContentfulRequestGuard>;

/// The check [`ContentfulRequestLayer`] runs: the core's [`RequestVerifier::verify`] on the buffered
/// request.
#[derive(Clone, Debug)]
pub struct ContentfulRequestGuard {
    verifier: Arc<RequestVerifier>,
    limits: BodyLimits,
    clock: Clock,
}

impl ContentfulRequestLayer {
    /// A layer verifying with `verifier` (its secrets, TTL, future skew and path prefix).
    #[must_use]
    pub fn new(verifier: RequestVerifier) -> Self {
        Self::from_guard(ContentfulRequestGuard {
            verifier: Arc::new(verifier),
            limits: BodyLimits::default(),
            clock: Clock::system(),
        })
    }
}

impl sealed::Sealed for ContentfulRequestGuard {}

impl ReadsBody for ContentfulRequestGuard {
    fn body_limits(&mut self) -> &mut BodyLimits {
        &mut self.limits
    }
}

impl ReadsClock for ContentfulRequestGuard {
    fn clock(&mut self) -> &mut Clock {
        &mut self.clock
    }
}

impl Guard for ContentfulRequestGuard {
    const ASYNC: bool = true;

    fn check_head(&self, request: &mut Request<Body>) -> Result<(), Rejection> {
        check_declared_length(request.headers(), self.limits).inspect_err(|rejection| {
            metrics::rejected(Provider::Contentful.as_str(), rejection.code())
        })
    }

    async fn check(&self, request: Request<Body>) -> Result<Request<Body>, Rejection> {
        let provider = Provider::Contentful.as_str();
        let peer = peer_address(&request);
        let (parts, body) = buffer(request, self.limits)
            .await
            .inspect_err(|rejection| metrics::rejected(provider, rejection.code()))?;
        let (timer, now) = (metrics::Timer::start(), self.clock.now());
        let verdict = self
            .verifier
            .verify(&parts, body, peer, now)
            .map_err(Rejection::from);
        metrics::verification(provider, verdict.as_ref().err().map(Rejection::code), timer);
        let verdict = verdict?;
        metrics::contentful_match(verdict.secret_index());
        Ok(hand_on(parts, Verified::Contentful(Arc::new(verdict))))
    }
}
