//! [`ReplayGuardLayer`]: a valid signed request that is captured and sent again is not handled
//! twice, while the provider's own retries still work, across a fleet through Redis.
//!
//! The layer sits after a verification layer ([`ContentstackWebhookLayer`](crate::ContentstackWebhookLayer)
//! or [`ContentfulLayer`](crate::ContentfulLayer)), which records what identifies the verified
//! delivery ([`ReplayIdentity`]): a digest of the verified signature, or for Contentful the
//! signed idempotency key, which every retry of a delivery shares. Unverified input never
//! reaches the store.
//!
//! | the store has | the request | answer |
//! |---|---|---|
//! | nothing | is claimed (in flight) and runs | the handler's |
//! | the delivery, done | does not run | 200 `{"status":"duplicate"}`, `X-Countersign-Replay: duplicate` |
//! | the delivery, in flight | does not run | 409 `request_in_flight`, `Retry-After` |
//!
//! When the handler answers 2xx the delivery is done. Any other answer, or an error of the
//! service, releases the claim, so the sender's retry is handled: a 5xx because the failure
//! may be transient, and a 4xx too, because the delivery was not handled (a permanent 4xx
//! stays visible to the sender, which retries a few times and then stops; Contentstack
//! disables a webhook after 10 failures in a row, so fix what the 4xx says). A duplicate of a
//! done delivery is acknowledged with 2xx so that the sender stops retrying and nothing is
//! handled twice.
//!
//! An entry lives as long as the signature stays acceptable (the verifier's tolerance or TTL
//! plus its future skew) plus a margin (default 60 s), and no longer.
//!
//! Two stores: [`MemoryStore`] (the default; one process) and `RedisStore` (feature `redis`;
//! every instance behind a load balancer agrees).
//!
//! ```
//! use axum::{Router, routing::post};
//! use countersign::contentstack::{StaticKeys, WebhookVerifier};
//! use countersign::replay::{MemoryStore, ReplayGuardLayer};
//! use countersign::ContentstackWebhookLayer;
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), countersign::ConfigError> {
//! # let pem = include_str!("../../../countersign-core/tests/data/keys/contentstack-a.public.pem");
//! let app: Router = Router::new().route(
//!     "/webhooks/contentstack",
//!     post(|| async { "handled" }).layer(
//!         ServiceBuilder::new()
//!             .layer(ContentstackWebhookLayer::new(WebhookVerifier::new(), StaticKeys::parse(pem)?))
//!             .layer(ReplayGuardLayer::new(MemoryStore::new(100_000))),
//!     ),
//! );
//! # Ok(())
//! # }
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
pub use countersign_core::replay::ReplayKey;
use http::{HeaderValue, Request, StatusCode, header};
use tower_layer::Layer;
use tower_service::Service;

pub use memory::{FullPolicy, MemoryStore};
#[cfg(feature = "redis")]
pub use redis::{RedisStore, UnavailablePolicy};

use crate::Rejection;
use crate::problem::Respond;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a verification layer records for the replay guard: the delivery's key, and how long
/// its signature stays acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayIdentity {
    /// What identifies the delivery.
    pub key: ReplayKey,
    /// How long the signature stays acceptable (`None`: forever, the TTL being off).
    pub window: Option<Duration>,
}

/// What the store says about a delivery it is asked to claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// Not seen: now claimed by the caller.
    Claimed,
    /// Seen and handled.
    Done,
    /// Seen and being handled now.
    InFlight,
    /// The store is full of live entries and refuses new ones.
    Full,
}

/// A store's failure (Redis unreachable, ...). The message never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the replay store failed: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// Who claimed a delivery: random per request, so that one instance never completes or
/// releases another's claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner(String);

impl Owner {
    fn new() -> Self {
        // Should the random source fail, a process-wide counter still keeps owners distinct
        // within this instance (and the pid across instances on one host).
        Self(countersign_core::random_hex(16).unwrap_or_else(|_| {
            use std::sync::atomic::{AtomicU64, Ordering};
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            format!(
                "{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            )
        }))
    }

    /// An owner with a given token (tests, custom guards).
    #[must_use]
    pub fn from_token(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The owner's token.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where deliveries are remembered: in new, in flight, then done states.
pub trait ReplayStore: Send + Sync + 'static {
    /// Claims `key` for `owner` for `ttl` unless it is known.
    fn claim(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        ttl: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;
    /// Marks `owner`'s claim of `key` done (kept until its TTL ends).
    fn complete(
        &self,
        key: &ReplayKey,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Forgets `owner`'s claim of `key`, so that a retry runs.
    fn release(
        &self,
        key: &ReplayKey,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// What to do when the store fails: pass the request on unprotected (`true`) or answer
    /// 503 (`false`, the default).
    fn fail_open(&self) -> bool {
        false
    }
}

/// How long an entry outlives the signature's acceptance window by default.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(60);
/// How long an entry lives when the signature never expires (TTL off).
pub const UNBOUNDED_WINDOW_TTL: Duration = Duration::from_secs(24 * 3600);
/// What `Retry-After` says for a delivery in flight, in seconds.
pub const RETRY_AFTER_SECS: u32 = 5;
/// The header on a duplicate's acknowledgement.
pub const REPLAY_HEADER: &str = "x-countersign-replay";

/// Answers replays of verified deliveries instead of handling them again. See the
/// [module docs](self).
pub struct ReplayGuardLayer<St> {
    store: Arc<St>,
    margin: Duration,
    respond: Respond,
}

impl<St> Clone for ReplayGuardLayer<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            margin: self.margin,
            respond: self.respond.clone(),
        }
    }
}

impl<St: fmt::Debug> fmt::Debug for ReplayGuardLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayGuardLayer")
            .field("store", &self.store)
            .field("margin", &self.margin)
            .finish()
    }
}

impl<St: ReplayStore> ReplayGuardLayer<St> {
    /// Remembers deliveries in `store`.
    #[must_use]
    pub fn new(store: St) -> Self {
        Self {
            store: Arc::new(store),
            margin: DEFAULT_MARGIN,
            respond: Respond::default(),
        }
    }

    /// How long an entry outlives the signature's acceptance window (default 60 s).
    #[must_use]
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Answers rejections (in flight, store full or down) with `respond` instead of the
    /// default problem+json.
    #[must_use]
    pub fn on_rejection(
        mut self,
        respond: impl Fn(&Rejection) -> Response + Send + Sync + 'static,
    ) -> Self {
        self.respond = Respond::custom(respond);
        self
    }
}

impl<S, St> Layer<S> for ReplayGuardLayer<St> {
    type Service = ReplayGuard<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        ReplayGuard {
            inner,
            store: Arc::clone(&self.store),
            margin: self.margin,
            respond: self.respond.clone(),
        }
    }
}

/// The service of [`ReplayGuardLayer`].
pub struct ReplayGuard<S, St> {
    inner: S,
    store: Arc<St>,
    margin: Duration,
    respond: Respond,
}

impl<S: Clone, St> Clone for ReplayGuard<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            store: Arc::clone(&self.store),
            margin: self.margin,
            respond: self.respond.clone(),
        }
    }
}

impl<S, St> fmt::Debug for ReplayGuard<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

fn duplicate() -> Response {
    let mut response = Response::new(Body::from(Bytes::from_static(br#"{"status":"duplicate"}"#)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(REPLAY_HEADER, HeaderValue::from_static("duplicate"));
    response
}

impl<S, St, B, ResBody> Service<Request<B>> for ReplayGuard<S, St>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    St: ReplayStore,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let store = Arc::clone(&self.store);
        let (margin, respond) = (self.margin, self.respond.clone());
        let request = request.map(Body::new);
        Box::pin(async move {
            let Some(identity) = request.extensions().get::<ReplayIdentity>().copied() else {
                let rejection = Rejection::misconfigured(
                    "replay_identity_missing",
                    "ReplayGuardLayer must run after a verification layer (ContentstackWebhookLayer or ContentfulLayer)",
                );
                return Ok(respond.respond(rejection, None));
            };
            let ttl = identity.window.unwrap_or(UNBOUNDED_WINDOW_TTL) + margin;
            let owner = Owner::new();
            match store.claim(&identity.key, &owner, ttl).await {
                Ok(Claim::Claimed) => {}
                Ok(Claim::Done) => {
                    tracing::info!(target: "countersign", key = %identity.key, "acknowledged a duplicate of a handled delivery");
                    return Ok(duplicate());
                }
                Ok(Claim::InFlight) => {
                    let rejection = Rejection::new(
                        StatusCode::CONFLICT,
                        "request_in_flight",
                        "Request in flight",
                        "the same delivery is being handled now",
                    )
                    .with_header(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                    return Ok(respond.respond(rejection, None));
                }
                Ok(Claim::Full) => {
                    let rejection = Rejection::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "replay_store_full",
                        "Replay store full",
                        "the replay store is full of live entries and refuses new ones",
                    )
                    .with_header(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                    return Ok(respond.respond(rejection, None));
                }
                Err(error) if store.fail_open() => {
                    tracing::warn!(target: "countersign", %error, "replay store unavailable: passing the request on unprotected");
                    return inner.call(request).await.map(|r| r.map(Body::new));
                }
                Err(error) => {
                    let rejection = Rejection::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "replay_store_unavailable",
                        "Replay store unavailable",
                        error.to_string(),
                    )
                    .with_header(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                    return Ok(respond.respond(rejection, None));
                }
            }
            let outcome = inner.call(request).await;
            let handled = matches!(&outcome, Ok(response) if response.status().is_success());
            let settled = if handled {
                store.complete(&identity.key, &owner).await
            } else {
                store.release(&identity.key, &owner).await
            };
            if let Err(error) = settled {
                tracing::error!(target: "countersign", %error, handled, "could not record the delivery's outcome in the replay store");
            }
            outcome.map(|response| response.map(Body::new))
        })
    }
}
