//! A local server that plays Contentstack's Developer Hub token endpoint and the Content
//! Management API, as a custom region base URL serves them (`/apps-api/token`, `/v3/...`).
//!
//! It checks every form field of the exchange and the refresh, issues short-lived app tokens,
//! rotates the refresh token on each refresh and refuses a used one with 400 `invalid_grant`,
//! and answers `GET /v3/content_types` only to a live access token of the stack named in
//! `api_key` (401 otherwise). It counts what it saw, for the fleet test's figures.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

/// The client the hub knows.
pub const CLIENT_ID: &str = "hub-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "hub-client-secret";

/// One installation: its organization and stack.
type Installation = (String, String);

/// What the hub issued and saw.
#[derive(Default)]
struct State {
    redirect_uri: String,
    lifetime_s: AtomicU64,
    /// One-time codes and the installation each authorizes.
    codes: Mutex<HashMap<String, Installation>>,
    /// Refresh tokens that still work.
    refresh_tokens: Mutex<HashMap<String, Installation>>,
    /// Every refresh token issued.
    issued_refresh_tokens: Mutex<Vec<String>>,
    /// Live access tokens: their installation and expiry.
    access_tokens: Mutex<HashMap<String, (Installation, Instant)>>,
    revoked: Mutex<HashSet<String>>,
    forms: Mutex<Vec<String>>,
    serial: AtomicUsize,
    exchanges: AtomicUsize,
    refreshes: AtomicUsize,
    invalid_grants: AtomicUsize,
    /// When each refresh was granted.
    refresh_times: Mutex<Vec<Instant>>,
    bad_forms: AtomicUsize,
    cma_calls: AtomicUsize,
    cma_unauthorized: AtomicUsize,
    /// How long an unknown code takes to be refused, in milliseconds (a slow hub).
    bogus_delay_ms: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running hub. Its tasks end with the runtime that started it.
#[derive(Clone)]
pub struct DeveloperHub {
    /// `http://127.0.0.1:<port>`: a custom region base URL.
    pub base: String,
    state: Arc<State>,
}

impl DeveloperHub {
    /// Serves on a free loopback port on the current runtime, for a client whose redirect URI
    /// is `redirect_uri`, issuing access tokens that live `lifetime`.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start(redirect_uri: &str, lifetime: Duration) -> Self {
        Self::start_with(redirect_uri, lifetime, Router::new()).await
    }

    /// [`start`](Self::start), serving `routes` too (the CMA's other endpoints).
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start_with(redirect_uri: &str, lifetime: Duration, routes: Router) -> Self {
        let state = Arc::new(State {
            redirect_uri: redirect_uri.to_owned(),
            lifetime_s: AtomicU64::new(lifetime.as_secs()),
            ..State::default()
        });
        let token_state = Arc::clone(&state);
        let cma_state = Arc::clone(&state);
        let token_route = post(move |headers: HeaderMap, form: String| {
            let state = Arc::clone(&token_state);
            async move { token(&state, &headers, &form).await }
        });
        // The guide's path, and the SDK's (it posts to `{developer hub}/token`).
        let app = Router::new()
            .route("/apps-api/token", token_route.clone())
            .route("/token", token_route)
            .route(
                "/v3/content_types",
                get(move |headers: HeaderMap| {
                    let state = Arc::clone(&cma_state);
                    async move { content_types(&state, &headers) }
                }),
            )
            .merge(routes);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("its address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://{address}"),
            state,
        }
    }

    /// Takes `delay` to refuse a code it never issued, as a slow token endpoint would.
    pub fn refuse_unknown_codes_after(&self, delay: Duration) {
        self.state.bogus_delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// A one-time code that authorizes the app in `organization`'s `stack` (the organization
    /// itself for an empty `stack`), as the redirect after an install brings it.
    pub fn code_for(&self, organization: &str, stack: &str) -> String {
        let code = format!(
            "code-{}",
            self.state.serial.fetch_add(1, Ordering::SeqCst) + 1
        );
        lock(&self.state.codes).insert(code.clone(), (organization.into(), stack.into()));
        code
    }

    /// Makes the CMA refuse `access_token` from now on, as after a revocation.
    pub fn revoke(&self, access_token: &str) {
        lock(&self.state.revoked).insert(access_token.to_owned());
    }

    /// The live access tokens of `stack`.
    pub fn access_tokens_of(&self, stack: &str) -> Vec<String> {
        lock(&self.state.access_tokens)
            .iter()
            .filter(|(_, ((_, s), _))| s == stack)
            .map(|(token, _)| token.clone())
            .collect()
    }

    /// Every refresh token issued so far.
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        lock(&self.state.issued_refresh_tokens).clone()
    }

    /// Every form posted to the token endpoint, in order.
    pub fn forms(&self) -> Vec<String> {
        lock(&self.state.forms).clone()
    }

    /// Codes exchanged.
    pub fn exchanges(&self) -> usize {
        self.state.exchanges.load(Ordering::SeqCst)
    }

    /// Refreshes granted.
    pub fn refreshes(&self) -> usize {
        self.state.refreshes.load(Ordering::SeqCst)
    }

    /// When each refresh was granted, in order.
    pub fn refresh_times(&self) -> Vec<Instant> {
        lock(&self.state.refresh_times).clone()
    }

    /// Grants refused with `invalid_grant` (a used code or refresh token).
    pub fn invalid_grants(&self) -> usize {
        self.state.invalid_grants.load(Ordering::SeqCst)
    }

    /// Token requests whose form had a field missing, extra or wrong.
    pub fn bad_forms(&self) -> usize {
        self.state.bad_forms.load(Ordering::SeqCst)
    }

    /// CMA calls answered 200.
    pub fn cma_calls(&self) -> usize {
        self.state.cma_calls.load(Ordering::SeqCst)
    }

    /// CMA calls answered 401.
    pub fn cma_unauthorized(&self) -> usize {
        self.state.cma_unauthorized.load(Ordering::SeqCst)
    }
}

fn answer(
    status: StatusCode,
    body: String,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    (status, [("content-type", "application/json")], body)
}

fn refusal(
    error: &str,
    description: &str,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    answer(
        StatusCode::BAD_REQUEST,
        format!(r#"{{"error":"{error}","error_description":"{description}"}}"#),
    )
}

/// `POST /apps-api/token`: exactly the fields Contentstack's SDK sends, in its order.
async fn token(
    state: &State,
    headers: &HeaderMap,
    form: &str,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    lock(&state.forms).push(form.to_owned());
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes())
        .into_owned()
        .collect();
    let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let expected: &[&str] = match field("grant_type") {
        Some("authorization_code") => &[
            "grant_type",
            "code",
            "redirect_uri",
            "client_id",
            "client_secret",
        ],
        Some("refresh_token") => &[
            "grant_type",
            "refresh_token",
            "client_id",
            "redirect_uri",
            "client_secret",
        ],
        _ => &[],
    };
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
        || names != expected
        || field("redirect_uri") != Some(state.redirect_uri.as_str())
    {
        state.bad_forms.fetch_add(1, Ordering::SeqCst);
        return refusal("invalid_request", "unexpected form");
    }
    if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
        state.bad_forms.fetch_add(1, Ordering::SeqCst);
        return answer(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid_client","error_description":"unknown client"}"#.to_owned(),
        );
    }
    let installation = if field("grant_type") == Some("refresh_token") {
        // Some time on the wire, so that two refreshes would overlap.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let used = field("refresh_token").unwrap_or_default();
        let Some(installation) = lock(&state.refresh_tokens).remove(used) else {
            state.invalid_grants.fetch_add(1, Ordering::SeqCst);
            return refusal("invalid_grant", "the refresh token was used or revoked");
        };
        state.refreshes.fetch_add(1, Ordering::SeqCst);
        lock(&state.refresh_times).push(Instant::now());
        installation
    } else {
        let Some(installation) = lock(&state.codes).remove(field("code").unwrap_or_default())
        else {
            let delay = state.bogus_delay_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            state.invalid_grants.fetch_add(1, Ordering::SeqCst);
            return refusal("invalid_grant", "the code was used or has expired");
        };
        state.exchanges.fetch_add(1, Ordering::SeqCst);
        installation
    };
    let serial = state.serial.fetch_add(1, Ordering::SeqCst) + 1;
    let suffix = countersign_core::random_hex(8).unwrap_or_default();
    let (access, refresh) = (
        format!("hub-at-{serial}-{suffix}"),
        format!("hub-rt-{serial}-{suffix}"),
    );
    let lifetime = state.lifetime_s.load(Ordering::SeqCst);
    lock(&state.access_tokens).insert(
        access.clone(),
        (
            installation.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        ),
    );
    lock(&state.refresh_tokens).insert(refresh.clone(), installation.clone());
    lock(&state.issued_refresh_tokens).push(refresh.clone());
    let (organization, stack) = installation;
    // An organization's installation (no stack) names no stack.
    let stack = if stack.is_empty() {
        String::new()
    } else {
        format!(r#","stack_api_key":"{stack}""#)
    };
    answer(
        StatusCode::OK,
        format!(
            r#"{{"access_token":"{access}","refresh_token":"{refresh}","token_type":"Bearer","expires_in":{lifetime},"location":"NA","organization_uid":"{organization}","authorization_type":"app"{stack}}}"#
        ),
    )
}

/// `GET /v3/content_types`: the stack's content types, to a live token of that stack.
fn content_types(
    state: &State,
    headers: &HeaderMap,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let stack = headers
        .get("api_key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let live = lock(&state.access_tokens)
        .get(bearer)
        .is_some_and(|((_, of), until)| of == stack && Instant::now() < *until)
        && !lock(&state.revoked).contains(bearer);
    if !live {
        state.cma_unauthorized.fetch_add(1, Ordering::SeqCst);
        return answer(
            StatusCode::UNAUTHORIZED,
            r#"{"error_message":"The provided access token is invalid or expired or revoked","error_code":105}"#
                .to_owned(),
        );
    }
    state.cma_calls.fetch_add(1, Ordering::SeqCst);
    answer(
        StatusCode::OK,
        format!(r#"{{"content_types":[{{"uid":"page","title":"Page of {stack}"}}]}}"#),
    )
}
