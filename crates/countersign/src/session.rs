//! Signed UI locations: from the `app-token` to the app's own session, scoped to the
//! organization and stack.
//!
//! - [`AppTokenLayer`] goes on the routes that serve UI locations. It reads `app-token` from the
//!   query string, verifies it (RS256 pinned; keys from a [`KeySource`], as for webhooks), mints
//!   the app's own session ([`Sessions`]) and hands the page handler an [`AppSession`] and the
//!   [`SessionToken`] to embed. Every answer to a request that carries an `app-token` gets
//!   `Referrer-Policy: no-referrer` (the token in the URL must not leak to third-party
//!   resources) and `Cache-Control: no-store`. The token never reaches logs.
//! - [`SessionLayer`] goes on the API routes. It accepts the session from
//!   `Authorization: Bearer` or the cookie and refuses (401) a missing, expired, tampered or
//!   unknown-key session, and a raw Contentstack app-token presented as one.
//! - [`AppSession`] is the extractor: organization, stack (`None` for organization apps),
//!   installation, user, app, and [`tenant_key`](countersign_core::session::AppSession::tenant_key)
//!   to scope every read and write.
//!
//! # Only this app's tokens
//!
//! Contentstack signs the app-tokens of every app with one key per region: a token of another
//! app verifies as well as yours. Require your app's uid on the verifier
//! ([`AppTokenVerifier::with_app_uid`]) and on the sessions ([`Sessions::with_app_uid`]): a
//! token of another app is then refused (403 `app_token_app_mismatch`), and so is a session of
//! another app signed with a shared key (403 `session_app_mismatch`). The tenant key includes
//! the app.
//!
//! # Delivery: bearer (default) or cookie
//!
//! The app runs in an iframe inside Contentstack, a third-party context where browsers block
//! or partition cookies. By default the page embeds the session (for instance in
//! `<meta name="app-session">`) and sends it as `Authorization: Bearer` on its own calls, which
//! works in every browser and cannot be sent cross-site by another page.
//!
//! [`Delivery::Cookie`] sets `__Host-countersign-session` with `Secure; HttpOnly;
//! SameSite=None; Partitioned; Path=/` instead. A cookie is sent by the browser on any request
//! to the app, including ones another site triggers, so in cookie mode every state-changing
//! call (any method but GET, HEAD and OPTIONS) must carry `X-CSRF-Token` with the session's
//! [`csrf_token`](countersign_core::session::AppSession::csrf_token), which the page receives
//! with the session and another site cannot read. [`SessionLayer`] refuses such a call without
//! it (403 `csrf_token_mismatch`).
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use countersign::contentstack::{AppTokenVerifier, StaticKeys};
//! use countersign::session::{AppSession, AppTokenLayer, SessionKey, SessionLayer, SessionToken, Sessions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let pem = include_str!("../../countersign-core/tests/data/keys/contentstack-a.public.pem");
//! let sessions = Sessions::new([SessionKey::new(b"load this from SESSION_SECRET, 32+ bytes")?])
//!     .with_app_uid("6650f7c8e2b0a10012345678"); // this app's uid, from Developer Hub
//! let keys = StaticKeys::parse(pem)?; // or WellKnownKeys::for_region(&region)
//!
//! async fn page(session: AppSession, SessionToken { token, .. }: SessionToken) -> String {
//!     format!(r#"<meta name="app-session" content="{token}"> stack {:?}"#, session.stack_api_key())
//! }
//!
//! async fn settings(session: AppSession) -> Json<serde_json::Value> {
//!     // Scope every read and write to the session's tenant.
//!     Json(serde_json::json!({ "tenant": session.tenant_key().to_string() }))
//! }
//!
//! let app: Router = Router::new()
//!     .route("/ui/{location}", get(page).layer(AppTokenLayer::new(
//!         AppTokenVerifier::new().with_app_uid("6650f7c8e2b0a10012345678"),
//!         keys,
//!         sessions.clone(),
//!     )))
//!     .route("/api/settings", get(settings).layer(SessionLayer::new(sessions)));
//! # Ok(())
//! # }
//! ```

use std::ops::Deref;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequestParts;
use countersign_core::contentstack::{
    APP_TOKEN_QUERY_PARAMETER, AppTokenError, AppTokenErrorKind, AppTokenVerifier, KeySource,
};
pub use countersign_core::session::{
    SessionError, SessionErrorKind, SessionKey, Sessions, TenantKey,
};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use percent_encoding::percent_decode_str;

use crate::Rejection;
use crate::guard::{Clock, Guard, GuardLayer, ResponseHeaders};

/// The session cookie's name in cookie mode.
pub const COOKIE_NAME: &str = "__Host-countersign-session";
/// The header that carries the CSRF token on state-changing calls in cookie mode.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the session reaches the browser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Delivery {
    /// The page embeds the token and sends `Authorization: Bearer` (the default).
    #[default]
    Bearer,
    /// A `__Host-` cookie (`Secure; HttpOnly; SameSite=None; Partitioned; Path=/`), with
    /// `X-CSRF-Token` required on state-changing calls.
    Cookie,
}

/// A verified session of this app: organization, stack, installation, user, app and tenant
/// key (through `Deref` to [`countersign_core::session::AppSession`]).
#[derive(Debug, Clone)]
pub struct AppSession(pub Arc<countersign_core::session::AppSession>);

impl Deref for AppSession {
    type Target = countersign_core::session::AppSession;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl AppSession {
    /// `Ok` when the session belongs to `stack_api_key`'s stack, else a 403 rejection
    /// (`tenant_mismatch`), for routes that name a stack.
    ///
    /// # Errors
    /// The rejection to answer with.
    pub fn require_stack(&self, stack_api_key: &str) -> Result<(), Rejection> {
        if self.is_stack(stack_api_key) {
            Ok(())
        } else {
            Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "tenant_mismatch",
                "Not this session's stack",
                "the session belongs to another stack",
            ))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AppSession {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            Rejection::misconfigured(
                "layer_missing",
                "the AppSession extractor needs SessionLayer (API routes) or AppTokenLayer (UI routes)",
            )
        })
    }
}

/// The session token just minted by [`AppTokenLayer`], for the page to embed, and the CSRF
/// token to send with state-changing calls in cookie mode.
#[derive(Debug, Clone)]
pub struct SessionToken {
    /// The session token (a JWT of this app).
    pub token: String,
    /// The CSRF token.
    pub csrf_token: String,
}

impl<S: Send + Sync> FromRequestParts<S> for SessionToken {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            Rejection::misconfigured(
                "layer_missing",
                "the SessionToken extractor needs AppTokenLayer",
            )
        })
    }
}

impl From<SessionError> for Rejection {
    fn from(error: SessionError) -> Self {
        let status = match error.kind() {
            SessionErrorKind::CsrfMismatch | SessionErrorKind::AppMismatch => StatusCode::FORBIDDEN,
            SessionErrorKind::NoKey => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        };
        Self::new(
            status,
            error.kind().code(),
            "Session not valid",
            error.message(),
        )
    }
}

/// Verifies the `app-token` of signed UI locations and mints the app's session. See the
/// [module docs](self).
pub type AppTokenLayer<K> = GuardLayer<AppTokenGuard<K>>;

/// The check [`AppTokenLayer`] runs.
#[derive(Clone, Debug)]
pub struct AppTokenGuard<K> {
    verifier: Arc<AppTokenVerifier>,
    keys: K,
    sessions: Sessions,
    delivery: Delivery,
    clock: Clock,
}

impl<K: KeySource + Clone> AppTokenLayer<K> {
    /// Verifies app-tokens with `verifier` and keys from `keys`; mints sessions with
    /// `sessions`, delivered as bearer tokens. When `verifier` requires an app uid
    /// ([`AppTokenVerifier::with_app_uid`]) and `sessions` are bound to none, they are bound to
    /// it; bind the `Sessions` of the [`SessionLayer`] too ([`Sessions::with_app_uid`]).
    #[must_use]
    pub fn new(verifier: AppTokenVerifier, keys: K, sessions: Sessions) -> Self {
        let sessions = match (verifier.app_uid(), sessions.app_uid()) {
            (Some(app_uid), None) => sessions.with_app_uid(app_uid),
            _ => sessions,
        };
        Self::from_guard(AppTokenGuard {
            verifier: Arc::new(verifier),
            keys,
            sessions,
            delivery: Delivery::Bearer,
            clock: Clock::system(),
        })
    }

    /// Delivers the session as a cookie too (see the [module docs](self)).
    #[must_use]
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.guard_mut().delivery = delivery;
        self
    }

    /// Reads the time from `clock` (tests).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.guard_mut().clock = clock;
        self
    }
}

/// `Referrer-Policy: no-referrer` and `Cache-Control: no-store`: the answer to a request with
/// an app-token in its URL.
fn token_page_headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// The value of `name` in a query string, percent-decoded.
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| {
            percent_decode_str(&value.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

impl<K: KeySource + Clone> AppTokenGuard<K> {
    async fn verify(
        &self,
        token: &str,
    ) -> Result<countersign_core::contentstack::AppTokenClaims, Rejection> {
        let keys = self
            .keys
            .keys()
            .await
            .map_err(|e| AppTokenError::key_unavailable(e.to_string()))?;
        let now = self.clock.now();
        match self.verifier.verify(token, &keys, now) {
            Err(error) if error.kind() == AppTokenErrorKind::BadSignature => {
                match self.keys.refresh(&keys).await {
                    Some(fresh) => Ok(self.verifier.verify(token, &fresh, now)?),
                    None => Err(error.into()),
                }
            }
            result => Ok(result?),
        }
    }

    async fn bootstrap(&self, mut request: Request<Body>) -> Result<Request<Body>, Rejection> {
        let token = request
            .uri()
            .query()
            .and_then(|query| query_value(query, APP_TOKEN_QUERY_PARAMETER))
            .ok_or_else(|| {
                Rejection::new(
                    StatusCode::UNAUTHORIZED,
                    "app_token_missing",
                    "App-token missing",
                    "a signed UI location is opened with ?app-token=...; this request has none",
                )
            })?;
        let claims = self.verify(&token).await?;
        let (session_token, session) = self.sessions.mint(&claims, self.clock.now())?;
        let mut extra = token_page_headers();
        if self.delivery == Delivery::Cookie {
            let max_age = session
                .expires_at()
                .duration_since(self.clock.now())
                .map_or(0, |d| d.as_secs());
            let cookie = format!(
                "{COOKIE_NAME}={session_token}; Max-Age={max_age}; Path=/; Secure; HttpOnly; SameSite=None; Partitioned"
            );
            let value = HeaderValue::from_str(&cookie).map_err(|_| {
                Rejection::misconfigured("session_cookie", "the session does not fit in a cookie")
            })?;
            extra.push((header::SET_COOKIE, value));
        }
        let csrf_token = session.csrf_token().to_owned();
        let extensions = request.extensions_mut();
        extensions.insert(AppSession(Arc::new(session)));
        extensions.insert(SessionToken {
            token: session_token,
            csrf_token,
        });
        extensions.insert(ResponseHeaders(extra));
        Ok(request)
    }
}

impl<K: KeySource + Clone> Guard for AppTokenGuard<K> {
    async fn check(&self, request: Request<Body>) -> Result<Request<Body>, Rejection> {
        let carries_token = request
            .uri()
            .query()
            .is_some_and(|query| query_value(query, APP_TOKEN_QUERY_PARAMETER).is_some());
        self.bootstrap(request).await.map_err(|rejection| {
            if carries_token {
                token_page_headers()
                    .into_iter()
                    .fold(rejection, |rejection, (name, value)| {
                        rejection.with_header(name, value)
                    })
            } else {
                rejection
            }
        })
    }
}

/// Accepts the app's session on API routes, from `Authorization: Bearer` or the cookie. See
/// the [module docs](self).
pub type SessionLayer = GuardLayer<SessionGuard>;

/// The check [`SessionLayer`] runs.
#[derive(Clone, Debug)]
pub struct SessionGuard {
    sessions: Sessions,
    clock: Clock,
}

impl SessionLayer {
    /// Verifies sessions with `sessions`.
    #[must_use]
    pub fn new(sessions: Sessions) -> Self {
        Self::from_guard(SessionGuard {
            sessions,
            clock: Clock::system(),
        })
    }

    /// Reads the time from `clock` (tests).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.guard_mut().clock = clock;
        self
    }
}

/// Where a session came from.
enum Presented {
    Bearer(String),
    Cookie(String),
}

fn presented(request: &Request<Body>) -> Option<Presented> {
    let headers = request.headers();
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| Presented::Bearer(token.trim().to_owned()));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE_NAME).then(|| Presented::Cookie(value.to_owned()))
        })
}

impl Guard for SessionGuard {
    async fn check(&self, mut request: Request<Body>) -> Result<Request<Body>, Rejection> {
        let presented = presented(&request).ok_or_else(|| {
            SessionError::new(
                SessionErrorKind::Missing,
                "no session (Authorization: Bearer or cookie)",
            )
        })?;
        let (token, from_cookie) = match presented {
            Presented::Bearer(token) => (token, false),
            Presented::Cookie(token) => (token, true),
        };
        let session = self.sessions.verify(&token, self.clock.now())?;
        let safe = matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        );
        if from_cookie && !safe {
            let sent = request
                .headers()
                .get(CSRF_HEADER)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            if !countersign_core::credentials::constant_time_eq(
                sent,
                session.csrf_token().as_bytes(),
            ) {
                return Err(SessionError::new(
                    SessionErrorKind::CsrfMismatch,
                    "a state-changing call authenticated by cookie needs X-CSRF-Token",
                )
                .into());
            }
        }
        request
            .extensions_mut()
            .insert(AppSession(Arc::new(session)));
        Ok(request)
    }
}
