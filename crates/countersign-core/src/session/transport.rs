//! How a session travels between the page and the backend, and the two entry points that use
//! it: [`Sessions::open`] on the page load of a signed UI location (the `app-token` in, the
//! app's session out) and [`Sessions::authenticate`] on every later call.
//!
//! The app runs in an iframe inside Contentstack, a third-party context where browsers block
//! or partition cookies. By default ([`Transport::Bearer`]) the page embeds the session and
//! sends it as `Authorization: Bearer` on its own calls, which works in every browser and
//! cannot be sent cross-site by another page. [`Transport::Cookie`] sets [`COOKIE_NAME`] with
//! `Secure; HttpOnly; SameSite=None; Partitioned; Path=/` instead; a cookie is sent on any
//! request to the app, including ones another site triggers, so every state-changing call
//! (any method but GET, HEAD and OPTIONS) authenticated by the cookie must carry
//! [`CSRF_HEADER`] with the session's [`csrf_token`](super::Session::csrf_token).

use std::time::SystemTime;

use http::{HeaderMap, Method, header};
use percent_encoding::percent_decode_str;

use super::{Session, SessionError, SessionErrorKind, Sessions};
use crate::contentstack::{
    APP_TOKEN_QUERY_PARAMETER, AppTokenClaims, AppTokenError, AppTokenErrorKind, AppTokenVerifier,
    KeySource, with_fresh_keys,
};
use crate::crypto::constant_time_eq;
use crate::replay::{Claim, ReplayKey, ReplayStore, StoreError, StoreErrorKind};

/// The session cookie's name in cookie mode.
pub const COOKIE_NAME: &str = "__Host-countersign-session";
/// The header that carries the CSRF token on state-changing calls in cookie mode.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the session reaches the browser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    /// The page embeds the token and sends `Authorization: Bearer` (the default).
    #[default]
    Bearer,
    /// A `__Host-` cookie (`Secure; HttpOnly; SameSite=None; Partitioned; Path=/`), with
    /// `X-CSRF-Token` required on state-changing calls.
    Cookie,
}

/// A session just opened from an app-token: the session, its token for the page to embed,
/// and the `Set-Cookie` value in cookie mode.
#[derive(Clone)]
pub struct Opened {
    /// The verified session.
    pub session: Session,
    /// The session token (a JWT of this app).
    pub token: String,
    /// The `Set-Cookie` value, in [`Transport::Cookie`] mode.
    pub set_cookie: Option<String>,
}

/// The headers of every answer to a page load whose URL carries an `app-token`, accepted or
/// not, so that the token leaks neither to third-party resources (`Referer`) nor to a cache.
pub const TOKEN_PAGE_HEADERS: [(&str, &str); 2] = [
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

impl Opened {
    /// Every header the page's answer must carry: the [`TOKEN_PAGE_HEADERS`] and, in cookie
    /// mode, `set-cookie`.
    pub fn answer_headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        TOKEN_PAGE_HEADERS.into_iter().chain(
            self.set_cookie
                .as_deref()
                .map(|cookie| ("set-cookie", cookie)),
        )
    }
}

/// The session's facts, but neither its token nor the cookie that carries it.
impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("session", &self.session)
            .field("token", &"<redacted>")
            .field(
                "set_cookie",
                &self.set_cookie.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why a UI location's page load got no session: its app-token, or the session minted from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// The app-token is missing, invalid or of another app.
    AppToken(AppTokenError),
    /// The session could not be minted.
    Session(SessionError),
    /// The store that spends single-use app-tokens did not answer
    /// ([`Sessions::open_once`]).
    Store(StoreError),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AppToken(error) => error.fmt(f),
            Self::Session(error) => error.fmt(f),
            Self::Store(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {}

/// The app-token of a page load's query, and its verified claims.
async fn verified_app_token<K: KeySource>(
    query: Option<&str>,
    verifier: &AppTokenVerifier,
    keys: &K,
    now: SystemTime,
) -> Result<(String, AppTokenClaims), OpenError> {
    let token = query
        .and_then(|query| query_value(query, APP_TOKEN_QUERY_PARAMETER))
        .ok_or_else(|| {
            OpenError::AppToken(AppTokenError::new(
                AppTokenErrorKind::Missing,
                "a signed UI location is opened with ?app-token=...; this request has none",
            ))
        })?;
    let claims = with_fresh_keys(
        keys,
        |keys| verifier.verify(&token, keys, now),
        |error: &AppTokenError| error.kind() == AppTokenErrorKind::BadSignature,
    )
    .await
    .map_err(OpenError::AppToken)?;
    Ok((token, claims))
}

/// Whether a query string carries an `app-token`: its answer, accepted or not, must not leak
/// the URL ([`TOKEN_PAGE_HEADERS`]).
#[must_use]
pub fn carries_app_token(query: Option<&str>) -> bool {
    query.is_some_and(|query| query_value(query, APP_TOKEN_QUERY_PARAMETER).is_some())
}

impl Sessions {
    /// The entry point of a signed UI location's page load: the `app-token` from `query`,
    /// verified with `verifier` and keys from `keys` (refreshed once on a signature that
    /// matches none), and the app's session minted from it, delivered by `transport`. The
    /// token must be of this app when either the verifier or these sessions are bound to one
    /// ([`AppTokenVerifier::with_app_uid`], [`with_app_uid`](Self::with_app_uid)).
    ///
    /// # Errors
    /// [`OpenError::AppToken`] (missing, malformed, forged, expired, another app's; or no key
    /// yet), [`OpenError::Session`] (no session key, another app's).
    pub async fn open<K: KeySource>(
        &self,
        query: Option<&str>,
        verifier: &AppTokenVerifier,
        keys: &K,
        transport: Transport,
        now: SystemTime,
    ) -> Result<Opened, OpenError> {
        let (_, claims) = verified_app_token(query, verifier, keys, now).await?;
        self.opened(&claims, transport, now)
    }

    /// [`open`](Self::open), spending the app-token in `store`: a token opens one session,
    /// so that a `?app-token=` URL from an access log, a browser history or a `Referer` opens
    /// nothing more. The store remembers the token until it expires (with the verifier's
    /// leeway and a minute to spare).
    ///
    /// # Errors
    /// As [`open`](Self::open); [`AppTokenErrorKind::Reused`] for a token already spent (or
    /// being spent), [`OpenError::Store`] when the store does not answer (refused: spending is
    /// what this method promises).
    pub async fn open_once<K: KeySource, S: ReplayStore>(
        &self,
        query: Option<&str>,
        verifier: &AppTokenVerifier,
        keys: &K,
        store: &S,
        transport: Transport,
        now: SystemTime,
    ) -> Result<Opened, OpenError> {
        let (token, claims) = verified_app_token(query, verifier, keys, now).await?;
        // Spent tokens share the store by stack (by organization for an organization app).
        let tenant = claims
            .stack_api_key
            .as_deref()
            .unwrap_or(&claims.organization_uid);
        let key = ReplayKey::app_token(tenant, &token);
        let remember = crate::freshness::unix_seconds(claims.exp)
            .duration_since(now)
            .unwrap_or_default()
            .saturating_add(verifier.leeway())
            .saturating_add(crate::replay::DEFAULT_MARGIN);
        match crate::replay::spend(store, &key, remember)
            .await
            .map_err(OpenError::Store)?
        {
            Claim::Claimed => {}
            Claim::Full | Claim::TenantFull => {
                return Err(OpenError::Store(StoreError::new(
                    StoreErrorKind::Full,
                    "the store of spent app-tokens is full; try again later",
                )));
            }
            Claim::Done | Claim::InFlight => {
                return Err(OpenError::AppToken(AppTokenError::new(
                    AppTokenErrorKind::Reused,
                    "this app-token has opened a session already; app-tokens are single use here",
                )));
            }
        }
        self.opened(&claims, transport, now)
    }

    /// The session of verified `claims`, and how it reaches the browser.
    fn opened(
        &self,
        claims: &AppTokenClaims,
        transport: Transport,
        now: SystemTime,
    ) -> Result<Opened, OpenError> {
        let (token, session) = self.mint(claims, now).map_err(OpenError::Session)?;
        let set_cookie = (transport == Transport::Cookie).then(|| {
            let max_age = session
                .expires_at()
                .duration_since(now)
                .map_or(0, |left| left.as_secs());
            format!(
                "{COOKIE_NAME}={token}; Max-Age={max_age}; Path=/; Secure; HttpOnly; SameSite=None; Partitioned"
            )
        });
        Ok(Opened {
            session,
            token,
            set_cookie,
        })
    }

    /// The entry point of an API call: the session from `Authorization: Bearer` or the cookie,
    /// verified at `now`, and in cookie mode the CSRF token of a state-changing `method`.
    ///
    /// # Errors
    /// A [`SessionError`]: missing, malformed, unknown key (a raw app-token), tampered,
    /// expired, another app's, or [`SessionErrorKind::CsrfMismatch`].
    pub fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<Session, SessionError> {
        let (token, by_cookie) = presented(headers).ok_or_else(|| {
            SessionError::new(
                SessionErrorKind::Missing,
                "no session (Authorization: Bearer or cookie)",
            )
        })?;
        let session = self.verify(token, now)?;
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if by_cookie && !safe {
            let sent = headers
                .get(CSRF_HEADER)
                .map(http::HeaderValue::as_bytes)
                .unwrap_or_default();
            if !constant_time_eq(sent, session.csrf_token().as_bytes()) {
                return Err(SessionError::new(
                    SessionErrorKind::CsrfMismatch,
                    "a state-changing call authenticated by cookie needs X-CSRF-Token",
                ));
            }
        }
        Ok(session)
    }
}

/// The session token presented, and whether it came by cookie. `Authorization`, when present,
/// is the only place looked at.
fn presented(headers: &HeaderMap) -> Option<(&str, bool)> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| (token.trim(), false));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE_NAME).then_some((value, true))
        })
}

/// The value of `name` in a query string, percent-decoded (`+` is a space).
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
