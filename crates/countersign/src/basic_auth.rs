//! [`BasicAuthLayer`] and [`RequiredHeadersLayer`]: the shared secrets Contentstack can add to
//! a webhook besides its signature (Basic auth, custom headers), checked in constant time,
//! several accepted values at once for rotation.
//!
//! ```
//! use axum::{Router, routing::post};
//! use countersign::credentials::{BasicAuth, RequiredHeaders};
//! use countersign::{BasicAuthLayer, RequiredHeadersLayer};
//!
//! # fn main() -> Result<(), countersign::ConfigError> {
//! let app: Router = Router::new()
//!     .route("/webhooks/contentstack", post(|| async { "ok" }))
//!     .layer(RequiredHeadersLayer::new(RequiredHeaders::new().with_header("x-hook-token", ["old", "new"])?))
//!     .layer(BasicAuthLayer::new(BasicAuth::new(["hook:old-password", "hook:new-password"])?));
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use axum::body::Body;
use countersign_core::credentials::{BasicAuth, RequiredHeaders};
use http::{HeaderValue, Request, header};

use crate::guard::{Guard, GuardLayer, sealed};
use crate::problem::Rejection;

/// Requires `Authorization: Basic` with one of the configured `user:password` pairs; answers
/// 401 with a `WWW-Authenticate` challenge otherwise.
pub type BasicAuthLayer = GuardLayer<BasicAuthGuard>;

/// The check [`BasicAuthLayer`] runs.
#[derive(Clone, Debug)]
pub struct BasicAuthGuard(Arc<BasicAuth>);

impl BasicAuthLayer {
    /// Accepts the pairs of `credentials`.
    #[must_use]
    pub fn new(credentials: BasicAuth) -> Self {
        Self::from_guard(BasicAuthGuard(Arc::new(credentials)))
    }
}

impl sealed::Sealed for BasicAuthGuard {}

impl Guard for BasicAuthGuard {
    const ASYNC: bool = false;

    fn check_head(&self, request: &mut Request<Body>) -> Result<(), Rejection> {
        self.0.check(request.headers()).map_err(|e| {
            Rejection::from(e).with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="countersign", charset="UTF-8""#),
            )
        })
    }
}

/// Requires headers with one of their accepted values; answers 401 otherwise.
pub type RequiredHeadersLayer = GuardLayer<RequiredHeadersGuard>;

/// The check [`RequiredHeadersLayer`] runs.
#[derive(Clone, Debug)]
pub struct RequiredHeadersGuard(Arc<RequiredHeaders>);

impl RequiredHeadersLayer {
    /// Requires the headers of `required`.
    #[must_use]
    pub fn new(required: RequiredHeaders) -> Self {
        Self::from_guard(RequiredHeadersGuard(Arc::new(required)))
    }
}

impl sealed::Sealed for RequiredHeadersGuard {}

impl Guard for RequiredHeadersGuard {
    const ASYNC: bool = false;

    fn check_head(&self, request: &mut Request<Body>) -> Result<(), Rejection> {
        // Shared secrets: redacted by any tracing layer that prints headers.
        let headers = request.headers_mut();
        for name in self.0.names() {
            if let http::header::Entry::Occupied(mut entry) = headers.entry(name) {
                entry.iter_mut().for_each(|value| value.set_sensitive(true));
            }
        }
        self.0
            .check(request.headers())
            .map_err(|(error, name)| Rejection::of(error.reason(), format!("{error}: {name}")))
    }
}
