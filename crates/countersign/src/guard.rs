//! The service behind every layer of this crate: a check, then the inner service or the
//! rejection's answer.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use bytes::Bytes;
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::BodyLimits;
use crate::problem::Respond;
use crate::{ClientIp, Rejection};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One check of a layer: it passes the request on (with what it learned in the extensions)
/// or rejects it. Implemented by this crate's layers; [`Guarded`] runs it.
pub trait Guard: Clone + Send + Sync + 'static {
    /// Checks `request`.
    fn check(
        &self,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Request<Body>, Rejection>> + Send;
}

/// Every layer of this crate: a [`Guard`] and how to answer its rejections. The layers are
/// named aliases of it ([`ContentfulLayer`](crate::ContentfulLayer),
/// [`IpAllowlistLayer`](crate::IpAllowlistLayer), ...).
#[derive(Clone, Debug)]
pub struct GuardLayer<G> {
    guard: G,
    respond: Respond,
}

impl<G> GuardLayer<G> {
    pub(crate) fn from_guard(guard: G) -> Self {
        Self {
            guard,
            respond: Respond::default(),
        }
    }

    pub(crate) fn guard_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    /// The same layer around another guard made from this one (a builder step that changes
    /// the guard's type).
    pub(crate) fn map_guard<H>(self, f: impl FnOnce(G) -> H) -> GuardLayer<H> {
        GuardLayer {
            guard: f(self.guard),
            respond: self.respond,
        }
    }

    /// Answers rejections with `respond` instead of the default problem+json. The rejection is
    /// logged and attached to the answer's extensions either way.
    #[must_use]
    pub fn on_rejection(
        mut self,
        respond: impl Fn(&Rejection) -> Response + Send + Sync + 'static,
    ) -> Self {
        self.respond = Respond::custom(respond);
        self
    }
}

impl<G: ReadsBody> GuardLayer<G> {
    /// The largest body accepted (default 2 MiB); a larger one is answered 413 as soon as its
    /// `Content-Length` or its streamed length says so.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.guard.body_limits().limit = bytes;
        self
    }

    /// How long reading the body may take (default 10 s); a slower one is answered 408.
    #[must_use]
    pub fn read_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.guard.body_limits().read_timeout = timeout;
        self
    }

    /// Reads the time from `clock` instead of the system clock (tests).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        *self.guard.clock() = clock;
        self
    }
}

impl<G: Clone, S> Layer<S> for GuardLayer<G> {
    type Service = Guarded<G, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded::new(self.guard.clone(), inner, self.respond.clone())
    }
}

/// A [`Guard`] that reads the body and the clock: its layer has `body_limit`, `read_timeout`
/// and `clock`.
pub trait ReadsBody {
    /// The guard's body limits.
    fn body_limits(&mut self) -> &mut BodyLimits;
    /// The guard's clock.
    fn clock(&mut self) -> &mut Clock;
}

/// The [`Service`] of every layer of this crate: it runs the layer's [`Guard`], then the inner
/// service, or answers the rejection (with the layer's custom answer, if one is set).
#[derive(Clone)]
pub struct Guarded<G, S> {
    guard: G,
    inner: S,
    respond: Respond,
}

impl<G, S> Guarded<G, S> {
    pub(crate) fn new(guard: G, inner: S, respond: Respond) -> Self {
        Self {
            guard,
            inner,
            respond,
        }
    }
}

impl<G: std::fmt::Debug, S> std::fmt::Debug for Guarded<G, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

/// Headers that carry secrets or signatures: marked sensitive so that tracing layers that print
/// headers redact them.
const SENSITIVE: [&str; 6] = [
    "authorization",
    "cookie",
    "x-contentful-signature",
    "x-contentstack-request-signature",
    "x-contentstack-hmac-signature",
    "x-contentstack-signature",
];

impl<G, S, B, ResBody> Service<Request<B>> for Guarded<G, S>
where
    G: Guard,
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
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
        let guard = self.guard.clone();
        let respond = self.respond.clone();
        // The clone that was driven to readiness is the one to call.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let mut request = request.map(Body::new);
        for name in SENSITIVE {
            if let http::header::Entry::Occupied(mut entry) = request.headers_mut().entry(name) {
                entry.iter_mut().for_each(|value| value.set_sensitive(true));
            }
        }
        let client = client_address(&request);
        Box::pin(async move {
            match guard.check(request).await {
                Ok(mut request) => {
                    let extra = request.extensions_mut().remove::<ResponseHeaders>();
                    let mut response = inner.call(request).await?.map(Body::new);
                    for (name, value) in extra
                        .map(|ResponseHeaders(extra)| extra)
                        .unwrap_or_default()
                    {
                        response.headers_mut().append(name, value);
                    }
                    Ok(response)
                }
                Err(rejection) => Ok(respond.respond(rejection, client)),
            }
        })
    }
}

/// Headers a guard wants on the answer of a request it let through.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResponseHeaders(pub(crate) Vec<(http::HeaderName, http::HeaderValue)>);

/// The client as resolved by an allowlist layer, or else the socket peer.
fn client_address(request: &Request<Body>) -> Option<IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<ClientIp>()
        .map(|ClientIp(ip)| *ip)
        .or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip())
        })
}

/// Where layers read the time: the system clock, or another for tests.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// The system clock.
    #[must_use]
    pub fn system() -> Self {
        Self(Arc::new(SystemTime::now))
    }

    /// A clock that reads `now`.
    #[must_use]
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The current time.
    #[must_use]
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}
