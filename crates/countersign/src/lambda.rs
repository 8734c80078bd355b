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

use axum::body::Body;
use countersign_core::ConfigError;
use countersign_core::lambda::{Event, route};
use http::{Request, Uri};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

use crate::guard::{Guard, GuardLayer, Guarded, sealed};
use crate::problem::Rejection;

/// Sets each request's URI to the target its sender signed, read from the Lambda event, less
/// the prefix the routes are served under. Refuses with 400 `lambda_query_lost` a
/// Contentful-signed request whose query the event lost (REST API v1, ALB), with 404
/// `lambda_prefix_missing` a target not under the prefix, and with 400 `lambda_target_invalid`
/// a path that is no request target. A request that did not come through `lambda_http` (no
/// request context) passes as it is.
pub type LambdaTargetLayer = GuardLayer<LambdaTargetGuard>;

/// The service of [`LambdaTargetLayer`] around `S` (the router).
pub type LambdaTarget<S> = Guarded<LambdaTargetGuard, S>;

/// The check [`LambdaTargetLayer`] runs.
#[derive(Debug, Clone, Default)]
pub struct LambdaTargetGuard {
    prefix: Option<Arc<str>>,
}

impl LambdaTargetLayer {
    /// No prefix: the routes are the sender's paths.
    #[must_use]
    pub fn new() -> Self {
        Self::from_guard(LambdaTargetGuard::default())
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
        self.guard_mut().prefix = Some(Arc::from(prefix));
        Ok(self)
    }
}

impl Default for LambdaTargetLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl sealed::Sealed for LambdaTargetGuard {}

impl Guard for LambdaTargetGuard {
    const ASYNC: bool = false;

    fn check_head(&self, request: &mut Request<Body>) -> Result<(), Rejection> {
        if let Some(uri) = target_of(request, self.prefix.as_deref())? {
            *request.uri_mut() = uri;
        }
        Ok(())
    }
}

/// The URI to route on ([`route`]); `None` for a request that did not come through
/// `lambda_http`.
fn target_of(request: &Request<Body>, prefix: Option<&str>) -> Result<Option<Uri>, Rejection> {
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
    route(&event, request.headers(), prefix)
        .map(Some)
        .map_err(Rejection::from)
}
