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
//!   installation, user, app, and [`tenant_key`](countersign_core::session::Session::tenant_key)
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
//! # Transport: bearer (default) or cookie
//!
//! The app runs in an iframe inside Contentstack, where browsers block or partition cookies.
//! By default the page embeds the session (for instance in `<meta name="app-session">`) and
//! sends it as `Authorization: Bearer`. [`Transport::Cookie`] sets `__Host-countersign-session`
//! (`Secure; HttpOnly; SameSite=None; Partitioned; Path=/`) instead, and then every
//! state-changing call must carry `X-CSRF-Token` with the session's
//! [`csrf_token`](countersign_core::session::Session::csrf_token), or [`SessionLayer`] refuses it
//! (403 `csrf_token_mismatch`). The rules live in the core
//! ([`countersign_core::session`]): [`Sessions::open`] and [`Sessions::authenticate`] are the two
//! entry points these layers call.
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use countersign::contentstack::{AppTokenVerifier, StaticKeys};
//! use countersign::contentstack::session::{AppSession, AppTokenLayer, SessionKey, SessionLayer, SessionToken, Sessions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let pem = include_str!("../../../countersign-core/tests/data/keys/contentstack-a.public.pem");
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
//!
//! # Single use
//!
//! An app-token lives for some minutes, and its URL can be read back from an access log, a
//! browser history or a `Referer`. [`AppTokenLayer::with_single_use`] spends each token in a
//! replay store ([`Sessions::open_once`]): the first load opens a session, any other load
//! of the same URL is refused (401 `app_token_reused`). With a shared store (`RedisStore`)
//! this holds across a fleet; the example backends turn it on.

use std::ops::Deref;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequestParts;
use countersign_core::contentstack::{AppTokenVerifier, KeySource};
use countersign_core::reason;
pub use countersign_core::session::{
    COOKIE_NAME, CSRF_HEADER, OpenError, SessionError, SessionErrorKind, SessionKey, Sessions,
    TenantKey, Transport,
};
use countersign_core::session::{TOKEN_PAGE_HEADERS, carries_app_token};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Request};

use crate::guard::{Clock, Guard, GuardLayer, ReadsClock, ResponseHeaders, sealed};
use crate::metrics;
use crate::problem::Rejection;
use crate::replay::{BoxReplayStore, ReplayStore};

/// A verified session of this app: organization, stack, installation, user, app and tenant
/// key (through `Deref` to [`countersign_core::session::Session`]).
#[derive(Debug, Clone)]
pub struct AppSession(pub Arc<countersign_core::session::Session>);

impl Deref for AppSession {
    type Target = countersign_core::session::Session;

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
            Err(Rejection::of(
                &reason::TENANT_MISMATCH,
                "the session belongs to another stack",
            ))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AppSession {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            Rejection::of(
                &reason::LAYER_MISSING,
                "the AppSession extractor needs SessionLayer (API routes) or AppTokenLayer (UI routes)",
            )
        })
    }
}

/// The session token just minted by [`AppTokenLayer`], for the page to embed, and the CSRF
/// token to send with state-changing calls in cookie mode.
#[derive(Clone)]
pub struct SessionToken {
    /// The session token (a JWT of this app).
    pub token: String,
    /// The CSRF token.
    pub csrf_token: String,
}

/// Both tokens are credentials: `Debug` shows neither.
impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionToken")
            .field("token", &"<redacted>")
            .field("csrf_token", &"<redacted>")
            .finish()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionToken {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            Rejection::of(
                &reason::LAYER_MISSING,
                "the SessionToken extractor needs AppTokenLayer",
            )
        })
    }
}

impl From<OpenError> for Rejection {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::AppToken(error) => error.into(),
            OpenError::Session(error) => error.into(),
            OpenError::Store(error) => Self::of(error.kind().reason(), error.to_string()),
        }
    }
}

/// Verifies the `app-token` of signed UI locations and mints the app's session. See the
/// [module docs](self).
pub type AppTokenLayer<K> = GuardLayer<AppTokenGuard<K>>;

/// The check [`AppTokenLayer`] runs: the core's [`Sessions::open`], or [`Sessions::open_once`]
/// with [`with_single_use`](AppTokenLayer::with_single_use).
#[derive(Clone, Debug)]
pub struct AppTokenGuard<K> {
    verifier: Arc<AppTokenVerifier>,
    keys: K,
    sessions: Sessions,
    transport: Transport,
    clock: Clock,
    spent: Option<BoxReplayStore>,
}

impl<K: KeySource + Clone> AppTokenLayer<K> {
    /// Verifies app-tokens with `verifier` and keys from `keys`; mints sessions with
    /// `sessions`, delivered as bearer tokens. A token of another app opens nothing when either
    /// is bound to this app ([`AppTokenVerifier::with_app_uid`], [`Sessions::with_app_uid`]:
    /// the core's [`Sessions::open`] checks both); bind the `Sessions` of the [`SessionLayer`]
    /// too, so that no other app's session verifies there.
    #[must_use]
    pub fn new(verifier: AppTokenVerifier, keys: K, sessions: Sessions) -> Self {
        Self::from_guard(AppTokenGuard {
            verifier: Arc::new(verifier),
            keys,
            sessions,
            transport: Transport::Bearer,
            clock: Clock::system(),
            spent: None,
        })
    }

    /// Makes app-tokens single use: each is spent in `store` when it opens a session, and a
    /// second load of its URL is refused (401 `app_token_reused`); a store that does not
    /// answer refuses the load (503). See [single use](self#single-use).
    #[must_use]
    pub fn with_single_use<S: ReplayStore>(mut self, store: S) -> Self {
        self.guard_mut().spent = Some(BoxReplayStore::new(store));
        self
    }

    /// Delivers the session as a cookie too (see the [module docs](self)).
    #[must_use]
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.guard_mut().transport = transport;
        self
    }
}

impl<K> sealed::Sealed for AppTokenGuard<K> {}

impl<K> ReadsClock for AppTokenGuard<K> {
    fn clock(&mut self) -> &mut Clock {
        &mut self.clock
    }
}

impl<K: KeySource + Clone> Guard for AppTokenGuard<K> {
    const ASYNC: bool = true;

    fn check_head(&self, _: &mut Request<Body>) -> Result<(), Rejection> {
        Ok(())
    }

    async fn check(&self, mut request: Request<Body>) -> Result<Request<Body>, Rejection> {
        let query = request.uri().query();
        let (verifier, now) = (&self.verifier, self.clock.now());
        let (sessions, keys, transport) = (&self.sessions, &self.keys, self.transport);
        let timer = metrics::Timer::start();
        let opened = match &self.spent {
            Some(store) => {
                sessions
                    .open_once(query, verifier, keys, store, transport, now)
                    .await
            }
            None => sessions.open(query, verifier, keys, transport, now).await,
        };
        let rejected = opened
            .as_ref()
            .err()
            .map(|e| Rejection::from(e.clone()).code());
        metrics::verification(metrics::APP_TOKEN, rejected, timer);
        let opened = match opened {
            Ok(opened) => opened,
            // The answer to a URL with a token in it must not leak it, accepted or not.
            Err(error) if carries_app_token(query) => {
                let rejection = Rejection::from(error);
                return Err(TOKEN_PAGE_HEADERS.into_iter().fold(
                    rejection,
                    |rejection, (name, value)| {
                        rejection.with_header(
                            HeaderName::from_static(name),
                            HeaderValue::from_static(value),
                        )
                    },
                ));
            }
            Err(error) => return Err(error.into()),
        };
        let extra = opened
            .answer_headers()
            .map(|(name, value)| {
                HeaderValue::from_str(value)
                    .map(|value| (HeaderName::from_static(name), value))
                    .map_err(|_| {
                        Rejection::of(
                            &reason::SESSION_COOKIE,
                            "the session does not fit in a cookie",
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let csrf_token = opened.session.csrf_token().to_owned();
        let extensions = request.extensions_mut();
        extensions.insert(AppSession(Arc::new(opened.session)));
        extensions.insert(SessionToken {
            token: opened.token,
            csrf_token,
        });
        extensions.insert(ResponseHeaders(extra));
        Ok(request)
    }
}

/// Accepts the app's session on API routes, from `Authorization: Bearer` or the cookie. See
/// the [module docs](self).
pub type SessionLayer = GuardLayer<SessionGuard>;

/// The check [`SessionLayer`] runs: the core's [`Sessions::authenticate`].
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
}

impl sealed::Sealed for SessionGuard {}

impl ReadsClock for SessionGuard {
    fn clock(&mut self) -> &mut Clock {
        &mut self.clock
    }
}

impl Guard for SessionGuard {
    const ASYNC: bool = false;

    fn check_head(&self, request: &mut Request<Body>) -> Result<(), Rejection> {
        let session =
            (self.sessions).authenticate(request.method(), request.headers(), self.clock.now())?;
        request
            .extensions_mut()
            .insert(AppSession(Arc::new(session)));
        Ok(())
    }
}
