//! [`ReplayGuardLayer`]: every verified delivery is handled once, none is lost while it is
//! being handled, and a replay is acknowledged without being handled again, across a fleet
//! through Redis.
//!
//! The layer sits after a verification layer ([`ContentstackWebhookLayer`](crate::ContentstackWebhookLayer)
//! or [`ContentfulRequestLayer`](crate::ContentfulRequestLayer)), whose verdict says what identifies the
//! verified delivery and for how long its signature stays acceptable
//! ([`Verdict`](countersign_core::Verdict)): for Contentstack the digest of the verified body, for
//! Contentful the signed idempotency key (or the verified HMAC where there is none). Every form
//! in which a provider may send one delivery again (re-signed, another salt length, another set
//! of signature elements) has the same key: [`countersign_core::replay`] has the rules.
//! Handlers read it as [`DeliveryId`], to make their own writes idempotent. Unverified input
//! never reaches the store.
//!
//! | the store has | the request | answer |
//! |---|---|---|
//! | nothing | is claimed (in flight, on a short lease) and runs | the handler's |
//! | the delivery, done | does not run | 200 `{"status":"duplicate"}`, `X-Countersign-Replay: duplicate` |
//! | the delivery, in flight | does not run | 409 `request_in_flight`, `Retry-After` |
//! | no room for the delivery's tenant | does not run | 503 `replay_tenant_full`, `Retry-After` |
//! | no room at all | does not run | 503 `replay_store_full`, `Retry-After` |
//!
//! # A claim cannot strand a delivery
//!
//! A claim is a lease ([`DEFAULT_LEASE`], 3 s: shorter than Contentstack's first retry
//! interval of 5 s), renewed every third of it while the handler runs. So:
//!
//! - when the handler answers 2xx, the delivery is marked done and remembered for the whole
//!   window: the signature's acceptance window (tolerance or TTL, plus future skew) plus a
//!   margin (60 s by default);
//! - when it answers anything else, or fails, the claim is released at once and the sender's
//!   retry runs (a 4xx too: the delivery was not handled; Contentstack disables a webhook after
//!   10 failures in a row, so fix what the 4xx says);
//! - when the handler's future is dropped (the client went away, Contentstack's 30 s timeout,
//!   a `tower` timeout), the claim is released in the background;
//! - when the process dies, nobody renews the lease, and it lapses by itself before the
//!   sender's first retry;
//! - when the store's answer to a claim is lost (Redis restarted mid-command), the claim is
//!   asked again: a claim is idempotent for its owner, so the second answer says whether the
//!   first was applied. If the store stays silent, the request is answered 503 (the sender
//!   retries) and whatever claim may have been applied lapses with its lease;
//! - when marking a handled delivery done fails, it is retried in the background and logged;
//!   meanwhile the lease lapses, so the delivery is never blocked, only exposed to being
//!   handled again if it is replayed (see below).
//!
//! # What "exactly once" means here, and where it stops
//!
//! Every delivery the provider sends, in any form, is handed to a handler until one answers
//! 2xx, and after that never again within the window: retries and replays are acknowledged.
//! That is exactly-once *handling* as far as the store can tell, and it stops where the store
//! cannot know:
//!
//! - the handler's effects and the "done" mark are two writes. A process that dies after the
//!   handler's own commit but before the mark, or a mark that cannot be written, lets the
//!   delivery's retry run again. Make the handler's writes idempotent by [`DeliveryId`] (an
//!   upsert or an insert that ignores a conflict on it), and that second run changes nothing;
//! - a lease lost while its handler still runs (the store unreachable for longer than the
//!   lease, or a process paused past it) lets a retry run concurrently. The renewal logs it;
//! - an entry lives for the window: a delivery replayed later than that is refused as stale
//!   by the verifier, not by the store. Keep the verifier's tolerance and the store together.
//!   A signature that never expires (a Contentful verifier with a TTL of 0) has no window:
//!   the guard refuses such requests as misconfigured (500, `replay_window_unbounded`),
//!   since no entry could outlive it;
//! - a store that loses its state (Redis flushed or restarted without persistence, a
//!   [`MemoryStore`] after a restart) forgets what was done: idempotent writes are again what
//!   keeps a replay from counting twice;
//! - [`FullPolicy::EvictOldest`] and `UnavailablePolicy::FailOpen` (Redis) trade exactly-once for
//!   availability, as their names say.
//!
//! Two stores: [`MemoryStore`] (the default; one process) and `RedisStore` (feature `redis`;
//! every instance behind a load balancer agrees).
//!
//! ```
//! use axum::{Router, routing::post};
//! use countersign::contentstack::{StaticKeys, WebhookVerifier};
//! use countersign::replay::{DeliveryId, MemoryStore, ReplayGuardLayer};
//! use countersign::ContentstackWebhookLayer;
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), countersign::ConfigError> {
//! # let pem = include_str!("../../../countersign-core/tests/data/keys/contentstack-a.public.pem");
//! let app: Router = Router::new().route(
//!     "/webhooks/contentstack",
//!     // Record the delivery under its id: a second run changes nothing.
//!     post(|DeliveryId(id): DeliveryId| async move { format!("handled {id}") }).layer(
//!         ServiceBuilder::new()
//!             .layer(ContentstackWebhookLayer::new(WebhookVerifier::new(), StaticKeys::parse(pem)?))
//!             .layer(ReplayGuardLayer::new(MemoryStore::default())),
//!     ),
//! );
//! # Ok(())
//! # }
//! ```

mod claim;
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
use countersign_core::reason;
pub use countersign_core::replay::ReplayKey;
use http::{HeaderValue, Request, header};
use tower_layer::Layer;
use tower_service::Service;

pub use crate::extract::DeliveryId;
pub use countersign_core::replay::{
    BoxReplayStore, Claim, FullPolicy, MemoryStore, Owner, REPLAY_HEADER, ReplayStore, StoreError,
    StoreErrorKind,
};
#[cfg(feature = "redis")]
pub use redis::{RedisStore, UnavailablePolicy};

use crate::extract::Verified;
use crate::metrics;
use crate::problem::Rejection;
use crate::problem::Respond;
use claim::{Held, claim, renew};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use countersign_core::replay::DEFAULT_MARGIN;
/// How long an in-flight claim lives without renewal by default: shorter than Contentstack's
/// first retry interval (5 s), so that the claim of a process that died has lapsed when the
/// retry arrives.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);

// A claim whose process died lapses before the sender's first retry arrives.
const _: () = assert!(
    DEFAULT_LEASE.as_millis() < countersign_core::contentstack::RETRY_SCHEDULE[0].as_millis()
);
pub use crate::problem::RETRY_AFTER_SECS;
/// How often marking a handled delivery done is tried in the background after the first
/// attempt failed, and the pause before each try.
const COMPLETE_RETRIES: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// How the guard holds its claims.
#[derive(Debug, Clone, Copy)]
struct Timing {
    margin: Duration,
    lease: Duration,
}

/// Answers replays of verified deliveries instead of handling them again, and keeps every
/// delivery claimed only while a handler really works on it. See the [module docs](self).
pub struct ReplayGuardLayer<St> {
    store: Arc<St>,
    timing: Timing,
    respond: Respond,
}

impl<St> Clone for ReplayGuardLayer<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            timing: self.timing,
            respond: self.respond.clone(),
        }
    }
}

impl<St: fmt::Debug> fmt::Debug for ReplayGuardLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayGuardLayer")
            .field("store", &self.store)
            .field("margin", &self.timing.margin)
            .field("lease", &self.timing.lease)
            .finish()
    }
}

impl<St: ReplayStore> ReplayGuardLayer<St> {
    /// Remembers deliveries in `store`.
    #[must_use]
    pub fn new(store: St) -> Self {
        Self {
            store: Arc::new(store),
            timing: Timing {
                margin: DEFAULT_MARGIN,
                lease: DEFAULT_LEASE,
            },
            respond: Respond::default(),
        }
    }

    /// How long an entry outlives the signature's acceptance window (default 60 s).
    #[must_use]
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.timing.margin = margin.min(countersign_core::MAX_WINDOW);
        self
    }

    /// How long a claim lives without renewal (default [`DEFAULT_LEASE`], at least 30 ms);
    /// it is renewed every third of it while the handler runs. Keep it shorter than the
    /// provider's first retry interval, and longer than the store's worst answer time.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.timing.lease = lease.clamp(Duration::from_millis(30), countersign_core::MAX_WINDOW);
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
            timing: self.timing,
            respond: self.respond.clone(),
        }
    }
}

/// The service of [`ReplayGuardLayer`].
pub struct ReplayGuard<S, St> {
    inner: S,
    store: Arc<St>,
    timing: Timing,
    respond: Respond,
}

impl<S: Clone, St> Clone for ReplayGuard<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            store: Arc::clone(&self.store),
            timing: self.timing,
            respond: self.respond.clone(),
        }
    }
}

impl<S, St> fmt::Debug for ReplayGuard<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("margin", &self.timing.margin)
            .field("lease", &self.timing.lease)
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
        let (timing, respond) = (self.timing, self.respond.clone());
        let request = request.map(Body::new);
        Box::pin(async move {
            let Some(verified) = request.extensions().get::<Verified>() else {
                return Ok(respond.respond(identity_missing(), None));
            };
            let key = verified.replay_key();
            // A signature that never expires (a Contentful TTL of 0) would need an entry kept
            // forever; any shorter one lets a captured request replay once it lapses.
            let Some(window) = verified.window() else {
                return Ok(respond.respond(window_unbounded(), None));
            };
            let owner = Owner::random();
            let claimed = claim(&store, &key, &owner, timing.lease).await;
            metrics::outcome(
                metrics::REPLAY,
                match &claimed {
                    Ok(Claim::Claimed) => "new",
                    Ok(Claim::Done) => "duplicate",
                    Ok(Claim::InFlight) => "in_flight",
                    Ok(Claim::Full) => "store_full",
                    Ok(Claim::TenantFull) => "tenant_full",
                    Err(_) => "store_error",
                },
            );
            match claimed {
                Ok(Claim::Claimed) => {}
                Ok(Claim::Done) => {
                    tracing::info!(target: "countersign", delivery = %key, "acknowledged a duplicate of a handled delivery");
                    return Ok(duplicate());
                }
                Ok(Claim::InFlight) => return Ok(respond.respond(in_flight(), None)),
                Ok(Claim::Full) => return Ok(respond.respond(store_full(), None)),
                Ok(Claim::TenantFull) => return Ok(respond.respond(tenant_full(), None)),
                Err(error) if store.fail_open() => {
                    tracing::warn!(target: "countersign", %error, "replay store unavailable: passing the request on unprotected");
                    return inner.call(request).await.map(|r| r.map(Body::new));
                }
                Err(error) => return Ok(respond.respond(store_unavailable(&error), None)),
            }
            // From here the claim is held: released if this future is dropped.
            let held = Held::new(Arc::clone(&store), key, owner);
            let outcome = tokio::select! {
                outcome = inner.call(request) => outcome,
                never = renew(&store, &key, &held.owner, timing.lease) => match never {},
            };
            let handled = matches!(&outcome, Ok(response) if response.status().is_success());
            held.settle(handled, window.saturating_add(timing.margin))
                .await;
            outcome.map(|response| response.map(Body::new))
        })
    }
}

/// A replay guard on a route without a verification layer: nothing says what the delivery is.
fn identity_missing() -> Rejection {
    Rejection::of(
        &reason::REPLAY_IDENTITY_MISSING,
        "ReplayGuardLayer must run after a verification layer (ContentstackWebhookLayer or ContentfulRequestLayer)",
    )
}

fn window_unbounded() -> Rejection {
    Rejection::of(
        &reason::REPLAY_WINDOW_UNBOUNDED,
        "ReplayGuardLayer needs signatures that expire: the verifier's TTL is 0 (off), so no store could remember a delivery for as long as it verifies; set a TTL",
    )
}

/// Another owner handles the delivery now: come back later (its lease lapses if it died).
fn in_flight() -> Rejection {
    Rejection::of(
        &reason::REQUEST_IN_FLIGHT,
        "the same delivery is being handled now",
    )
}

/// The store refuses new entries while every one is live: come back later.
fn store_full() -> Rejection {
    Rejection::of(
        &reason::REPLAY_STORE_FULL,
        "the replay store is full of live entries and refuses new ones",
    )
}

/// The delivery's tenant holds its whole share of the store: come back later. The other
/// tenants are served meanwhile.
fn tenant_full() -> Rejection {
    Rejection::of(
        &reason::REPLAY_TENANT_FULL,
        "the delivery's tenant holds its whole share of the replay store; other tenants are served",
    )
}

/// The store failed, and the guard fails closed: 503, and the sender retries.
fn store_unavailable(error: &StoreError) -> Rejection {
    Rejection::of(&reason::REPLAY_STORE_UNAVAILABLE, error.to_string())
}
