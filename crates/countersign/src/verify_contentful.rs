//! [`ContentfulLayer`]: verifies Contentful's request signature before the handler runs.
//!
//! App events, app actions, webhooks with a signing secret and frontend-signed requests all
//! carry the same signature. The layer reads the body (up to a limit), verifies the signature
//! over the method, the raw request target, the signed headers and the body, and hands the
//! verified facts on as a [`ContentfulRequest`].
//!
//! ```
//! use axum::{Json, Router, routing::post};
//! use countersign::contentful::{SigningSecret, Verifier};
//! use countersign::{ContentfulLayer, ContentfulRequest};
//!
//! # fn main() -> Result<(), countersign::ConfigError> {
//! let verifier = Verifier::new(SigningSecret::new("a".repeat(64))?);
//! let app: Router = Router::new()
//!     .route("/contentful/events", post(|event: ContentfulRequest, Json(body): Json<serde_json::Value>| async move {
//!         format!("{:?}: {body}", event.topic())
//!     }))
//!     .layer(ContentfulLayer::new(verifier).body_limit(1024 * 1024));
//! # Ok(())
//! # }
//! ```
//!
//! Behind a reverse proxy that strips a path prefix, configure it on the verifier
//! ([`Verifier::with_path_prefix`]), or trust `X-Forwarded-Prefix` from your proxies only
//! ([`ContentfulLayer::trust_forwarded_prefix`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use countersign_core::contentful::Verifier;
use countersign_core::ip::IpAllowlist;
use http::Request;

use crate::body::{BodyLimits, buffer};
use crate::guard::{Clock, Guard, GuardLayer, ReadsBody};
use crate::replay::ReplayIdentity;
use crate::{ContentfulRequest, Rejection, VerifiedBody};

/// Verifies Contentful request signatures. See the [module docs](self).
pub type ContentfulLayer = GuardLayer<ContentfulGuard>;

/// The check [`ContentfulLayer`] runs.
#[derive(Clone, Debug)]
pub struct ContentfulGuard {
    verifier: Arc<Verifier>,
    limits: BodyLimits,
    prefix_proxies: Option<Arc<IpAllowlist>>,
    clock: Clock,
}

impl ContentfulLayer {
    /// A layer verifying with `verifier` (its secrets, TTL, future skew and path prefix).
    #[must_use]
    pub fn new(verifier: Verifier) -> Self {
        Self::from_guard(ContentfulGuard {
            verifier: Arc::new(verifier),
            limits: BodyLimits::default(),
            prefix_proxies: None,
            clock: Clock::system(),
        })
    }

    /// Takes the path prefix from `X-Forwarded-Prefix` when, and only when, the socket peer is
    /// one of `proxies` (needs `into_make_service_with_connect_info::<SocketAddr>()`).
    #[must_use]
    pub fn trust_forwarded_prefix(mut self, proxies: IpAllowlist) -> Self {
        self.guard_mut().prefix_proxies = Some(Arc::new(proxies));
        self
    }
}

impl ReadsBody for ContentfulGuard {
    fn body_limits(&mut self) -> &mut BodyLimits {
        &mut self.limits
    }

    fn clock(&mut self) -> &mut Clock {
        &mut self.clock
    }
}

impl ContentfulGuard {
    fn forwarded_prefix<'r>(&self, request: &'r Request<Body>) -> Option<&'r str> {
        let proxies = self.prefix_proxies.as_ref()?;
        let ConnectInfo(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>()?;
        if !proxies.contains(peer.ip()) {
            return None;
        }
        request.headers().get("x-forwarded-prefix")?.to_str().ok()
    }
}

impl Guard for ContentfulGuard {
    async fn check(&self, request: Request<Body>) -> Result<Request<Body>, Rejection> {
        let (mut request, body) = buffer(request, self.limits).await?;
        let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let verified = self.verifier.verify_with_prefix(
            request.method(),
            target,
            request.headers(),
            &body,
            self.clock.now(),
            self.forwarded_prefix(&request),
        )?;
        request.extensions_mut().insert(ReplayIdentity {
            key: verified.replay_key(),
            window: self.verifier.acceptance_window(),
        });
        request
            .extensions_mut()
            .insert(ContentfulRequest(Arc::new(verified)));
        request.extensions_mut().insert(VerifiedBody(body));
        Ok(request)
    }
}
