//! The service behind every check layer of this crate: a check, then the inner service or the
//! rejection's answer.
//!
//! # Sealed
//!
//! [`Guard`] is sealed: the layers are this crate's API, and their checks are the core's entry
//! points, which you can call yourself. To add a check of your own, write a Tower layer (or an
//! `axum::middleware::from_fn`) after ours and read the verdict through the extractors.
//! Sealing keeps every check's order fixed (head, then body) and lets the crate change how a
//! guard runs without breaking you.
//!
//! # Early refusals
//!
//! A guard first checks the request's head ([`Guard::check_head`]: the address, credentials,
//! the declared length), synchronously. A refusal there neither reads the body nor boxes a
//! future: the service answers with a ready future, as tower-http's `csrf` does. Only a guard
//! that reads the body or waits on keys runs an async step, in one boxed future.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use bytes::Bytes;
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::BodyLimits;
use crate::extract::ClientIp;
use crate::problem::Rejection;
use crate::problem::Respond;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// One check of a layer: it passes the request on (with what it learned in the extensions)
/// or rejects it.
///
/// Sealed: implemented by this crate's layers only. Their checks are the core's entry points,
/// which you can call yourself; to add a check of your own, write a Tower layer after ours (or
/// an `axum::middleware::from_fn`) and read the extractors. A guard first checks the request's
/// head, synchronously: a refusal there neither reads the body nor boxes a future.
pub trait Guard: sealed::Sealed + Clone + Send + Sync + 'static {
    /// Whether the guard has an async step ([`check`](Self::check)) after its head check.
    const ASYNC: bool;

    /// Checks what arrives before the body, synchronously.
    ///
    /// # Errors
    /// The rejection to answer with.
    fn check_head(&self, request: &mut Request<Body>) -> Result<(), Rejection>;

    /// The async step, when [`ASYNC`](Self::ASYNC): reads the body, waits on keys.
    fn check(
        &self,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Request<Body>, Rejection>> + Send {
        std::future::ready(Ok(request))
    }
}

/// Every check layer of this crate: a [`Guard`] and how to answer its rejections. The layers
/// are named aliases of it ([`ContentfulRequestLayer`](crate::ContentfulRequestLayer),
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
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.guard.body_limits().limit = bytes;
        self
    }

    /// How long reading the body may take (default 10 s); a slower one is answered 408.
    #[must_use]
    pub fn with_read_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.guard.body_limits().read_timeout = timeout;
        self
    }
}

impl<G: ReadsClock> GuardLayer<G> {
    /// Reads the time from `clock` instead of the system clock (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        *self.guard.clock() = clock;
        self
    }
}

impl<G: Clone, S> Layer<S> for GuardLayer<G> {
    type Service = Guarded<G, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded {
            guard: self.guard.clone(),
            inner,
            respond: self.respond.clone(),
        }
    }
}

/// A [`Guard`] that reads the body: its layer has `with_body_limit` and `with_read_timeout`.
pub trait ReadsBody: sealed::Sealed {
    /// The guard's body limits.
    fn body_limits(&mut self) -> &mut BodyLimits;
}

/// A [`Guard`] that reads the clock: its layer has `with_clock`.
pub trait ReadsClock: sealed::Sealed {
    /// The guard's clock.
    fn clock(&mut self) -> &mut Clock;
}

/// The [`Service`] of every check layer of this crate: it runs the layer's [`Guard`], then the
/// inner service, or answers the rejection (with the layer's custom answer, if one is set).
#[derive(Clone)]
pub struct Guarded<G, S> {
    guard: G,
    inner: S,
    respond: Respond,
}

impl<G: std::fmt::Debug, S> std::fmt::Debug for Guarded<G, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

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
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut request = request.map(Body::new);
        countersign_core::mark_sensitive(request.headers_mut());
        if let Err(rejection) = self.guard.check_head(&mut request) {
            let client = client_address(&request);
            let response = Some(self.respond.respond(rejection, client));
            return ResponseFuture {
                state: State::Rejected { response },
            };
        }
        // The clone that was driven to readiness is the one to call.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        if !G::ASYNC {
            return ResponseFuture {
                state: State::Inner {
                    future: inner.call(request),
                },
            };
        }
        let (guard, respond) = (self.guard.clone(), self.respond.clone());
        let client = client_address(&request);
        let future = Box::pin(async move {
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
        });
        ResponseFuture {
            state: State::Checked { future },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Guarded`]: a refusal of the head, ready at once; the inner service's
    /// future, when the head check was all; or the async check and then the inner service.
    #[project = Projected]
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProjected]
    enum State<F, E> {
        Rejected { response: Option<Response> },
        Inner { #[pin] future: F },
        Checked { future: Pin<Box<dyn Future<Output = Result<Response, E>> + Send>> },
    }
}

impl<F, E> std::fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<F, E, ResBody> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProjected::Rejected { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_default()))
            }
            StateProjected::Inner { future } => {
                Poll::Ready(ready!(future.poll(cx)).map(|response| response.map(Body::new)))
            }
            StateProjected::Checked { future } => future.as_mut().poll(cx),
        }
    }
}

/// Headers a guard wants on the answer of a request it let through.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResponseHeaders(pub(crate) Vec<(http::HeaderName, http::HeaderValue)>);

/// The client as resolved by an allowlist layer, or else the socket peer.
pub(crate) fn client_address<B>(request: &Request<B>) -> Option<IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<ClientIp>()
        .map(|ClientIp(ip)| *ip)
        .or_else(|| peer_address(request))
}

/// The socket peer, when the server records it (`into_make_service_with_connect_info`).
pub(crate) fn peer_address<B>(request: &Request<B>) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
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
