//! AWS Lambda (feature `lambda`): [`LambdaTargetLayer`] gives the routes, and the Contentful
//! layer behind them, the request target the sender signed, which `lambda_http`'s converted
//! URI is not for every kind of event (`countersign_core::lambda` has the table).
//!
//! Wrap the whole router, so that it routes on the target too:
//!
//! ```no_run
//! use axum::{Router, routing::post};
//! use countersign::ContentfulRequestLayer;
//! use countersign::contentful::{RequestKinds, RequestVerifier, SigningSecret};
//! use countersign::lambda::LambdaTargetLayer;
//! use tower_layer::Layer;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let verifier = RequestVerifier::new(SigningSecret::new("a".repeat(64))?)
//!     .with_kinds(RequestKinds::EVENTS)
//!     // The stage (or base path) the routes are served under: the sender signed it.
//!     .with_path_prefix("/prod")?;
//! let router = Router::new().route(
//!     "/contentful/events",
//!     post(|| async { "ok" }).layer(ContentfulRequestLayer::new(verifier)),
//! );
//! lambda_http::run(LambdaTargetLayer::new().with_prefix("/prod")?.layer(router)).await?;
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use countersign_core::ConfigError;
use countersign_core::lambda::{Event, routed_target, signed_target};
use http::{Request, Uri};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tower_layer::Layer;
use tower_service::Service;

use crate::problem::Rejection;

/// Sets each request's URI to the target its sender signed, read from the Lambda event, less
/// the prefix the routes are served under; refuses with 400 `lambda_query_lost` a
/// Contentful-signed request whose query the event lost (REST API v1, ALB). A request that did
/// not come through `lambda_http` (no request context) passes as it is.
#[derive(Debug, Clone, Default)]
pub struct LambdaTargetLayer {
    prefix: Option<Arc<str>>,
}

impl LambdaTargetLayer {
    /// No prefix: the routes are the sender's paths.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The stage or base path the routes are served under (`/prod`, `/api`): taken off the
    /// signed path before routing. Give the Contentful verifier the same prefix
    /// ([`with_path_prefix`](crate::contentful::RequestVerifier::with_path_prefix)), which puts
    /// it back before verifying.
    ///
    /// # Errors
    /// Unless `prefix` starts with `/`, does not end with `/`, and holds no `?`, `#` or control
    /// character (the verifier's own rule).
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        let prefix = countersign_core::contentful::validate_path_prefix(prefix)?;
        self.prefix = Some(Arc::from(prefix));
        Ok(self)
    }
}

impl<S> Layer<S> for LambdaTargetLayer {
    type Service = LambdaTarget<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LambdaTarget {
            inner,
            prefix: self.prefix.clone(),
        }
    }
}

/// The service of [`LambdaTargetLayer`].
#[derive(Debug, Clone)]
pub struct LambdaTarget<S> {
    inner: S,
    prefix: Option<Arc<str>>,
}

impl<S, B> Service<Request<B>> for LambdaTarget<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TargetFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match target_of(&request, self.prefix.as_deref()) {
            Ok(Some(uri)) => *request.uri_mut() = uri,
            Ok(None) => {}
            Err(rejection) => {
                return TargetFuture {
                    state: State::Refused {
                        response: Some(rejection.into_response()),
                    },
                };
            }
        }
        TargetFuture {
            state: State::Inner {
                future: self.inner.call(request),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`LambdaTarget`]: the refusal's answer, or the inner service's.
    pub struct TargetFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProjection]
    enum State<F> {
        Refused { response: Option<Response> },
        Inner { #[pin] future: F },
    }
}

impl<F, E> std::future::Future for TargetFuture<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProjection::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_default()))
            }
            StateProjection::Inner { future } => future.poll(cx),
        }
    }
}

/// The URI to route on: the signed target less `prefix`; `None` for a request that did not
/// come through `lambda_http`.
fn target_of<B>(request: &Request<B>, prefix: Option<&str>) -> Result<Option<Uri>, Rejection> {
    let Some(context) = request.request_context_ref() else {
        return Ok(None);
    };
    let query = request.uri().query().unwrap_or_default();
    let event = match context {
        RequestContext::ApiGatewayV1(context) => Event::RestApi {
            context_path: context.path.as_deref(),
            has_query: !query.is_empty(),
        },
        RequestContext::ApiGatewayV2(_) => Event::HttpApi {
            raw_path: request.raw_http_path(),
            raw_query: query,
        },
        RequestContext::Alb(_) => Event::Alb {
            path: request.raw_http_path(),
            has_query: !query.is_empty(),
        },
        _ => return Ok(None),
    };
    let target = match signed_target(&event) {
        Ok(target) => target,
        // Only a Contentful signature covers the target: other requests route on the path.
        Err(_)
            if !request
                .headers()
                .contains_key(countersign_core::contentful::SIGNATURE) =>
        {
            let path = match event {
                Event::RestApi { context_path, .. } => context_path.unwrap_or("/"),
                Event::HttpApi { raw_path, .. } => raw_path,
                Event::Alb { path, .. } => path,
            };
            path.to_owned()
        }
        Err(error) => return Err(Rejection::from(error)),
    };
    let routed = routed_target(&target, prefix).map_err(Rejection::from)?;
    routed.parse().map(Some).map_err(|_| {
        Rejection::of(
            &countersign_core::reason::LAMBDA_TARGET_INVALID,
            "the Lambda event's path is not a request target",
        )
    })
}
