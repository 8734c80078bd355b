//! Calling Contentstack as the app: `GET /oauth/callback` (where Contentstack sends the admin
//! after installing the app) and `GET /api/content-types` (the session's stack's content
//! types, read from the Content Management API as the app).
//!
//! The tokens are the installation's, kept sealed in the app's database ([`SealedTokens`]); a
//! session reaches only the tokens of its own organization and stack.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use countersign::Rejection;
use countersign::contentstack::oauth::{ContentstackOAuth, Installation, OAuthErrorKind};
use countersign::contentstack::session::AppSession;
use countersign::ip::{ForwardedHeader, IpAllowlist, client_ip};
use countersign::reason;
use tokio::sync::Semaphore;

use crate::AppResult;
use crate::api::stack_of;
use crate::config::OAuthConfig;
use crate::store::{SealedTokens, Store};

/// The bound of one CMA call.
const CMA_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes read of a CMA answer.
const MAX_CMA_ANSWER: usize = 4 * 1024 * 1024;

/// The OAuth client and the HTTP client of CMA calls, when OAuth is configured.
#[derive(Clone)]
pub(crate) struct AsTheApp(Option<Configured>);

#[derive(Clone)]
struct Configured {
    oauth: ContentstackOAuth<SealedTokens>,
    http: reqwest::Client,
    /// The code exchanges under way, per client and in all: the callback is open to anyone,
    /// and each exchange spends the app's requests at the token endpoint.
    exchanges: Arc<Exchanges>,
    /// The proxies whose forwarding header names the client.
    trusted_proxies: Option<IpAllowlist>,
}

/// The most code exchanges at once; beyond, 503 `oauth_unavailable` with `Retry-After`.
const MAX_EXCHANGES: usize = 32;
/// The most one client (an IPv4 address, an IPv6 /64) runs at once: a real install makes one.
const MAX_EXCHANGES_PER_CLIENT: usize = 2;
/// How many refused codes a client may send within [`REFUSALS_FORGOTTEN_AFTER`] before its
/// callbacks are answered without asking the token endpoint.
const MAX_REFUSALS_PER_CLIENT: usize = 3;
/// How long a refused code counts against its client.
const REFUSALS_FORGOTTEN_AFTER: Duration = Duration::from_secs(60);
/// The most clients remembered: beyond, those with no exchange running are forgotten.
const MAX_CLIENTS: usize = 10_000;

/// The callback's exchanges: at most [`MAX_EXCHANGES`] in all and
/// [`MAX_EXCHANGES_PER_CLIENT`] per client, so that one client's bogus callbacks never hold
/// every slot; and a client whose codes were refused [`MAX_REFUSALS_PER_CLIENT`] times lately
/// is answered at once, without the token endpoint (a bogus code costs it nothing more).
struct Exchanges {
    all: Arc<Semaphore>,
    clients: Mutex<HashMap<IpAddr, Client>>,
}

#[derive(Default)]
struct Client {
    running: usize,
    refused: VecDeque<Instant>,
}

/// One exchange's place: given back when dropped.
struct Turn {
    exchanges: Arc<Exchanges>,
    client: IpAddr,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Exchanges {
    fn new() -> Self {
        Self {
            all: Arc::new(Semaphore::new(MAX_EXCHANGES)),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Client>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A turn for `client`, or why not.
    fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Turn, &'static str> {
        let mut clients = self.clients();
        let now = Instant::now();
        if clients.len() >= MAX_CLIENTS {
            // Full (addresses are cheap): those with no exchange running are forgotten,
            // their refusals with them, rather than a newcomer refused. At most
            // MAX_EXCHANGES are running.
            clients.retain(|_, c| c.running > 0);
        }
        let entry = clients.entry(client).or_default();
        entry
            .refused
            .retain(|at| now.duration_since(*at) < REFUSALS_FORGOTTEN_AFTER);
        if entry.refused.len() >= MAX_REFUSALS_PER_CLIENT {
            return Err("this address sent codes that were refused: try again in a minute");
        }
        if entry.running >= MAX_EXCHANGES_PER_CLIENT {
            return Err("too many code exchanges from this address at once");
        }
        let permit = Arc::clone(&self.all)
            .try_acquire_owned()
            .map_err(|_| "too many code exchanges at once")?;
        entry.running += 1;
        Ok(Turn {
            exchanges: Arc::clone(self),
            client,
            _permit: permit,
        })
    }
}

impl Turn {
    /// The token endpoint refused the code.
    fn refused(&self) {
        if let Some(client) = self.exchanges.clients().get_mut(&self.client) {
            client.refused.push_back(Instant::now());
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut clients = self.exchanges.clients();
        if let Some(client) = clients.get_mut(&self.client) {
            client.running = client.running.saturating_sub(1);
            if client.running == 0 && client.refused.is_empty() {
                clients.remove(&self.client);
            }
        }
    }
}

/// Whom the callback counts a request against: its client's network (past trusted proxies),
/// as the server counts its connections.
fn client_of(peer: Option<IpAddr>, headers: &HeaderMap, trusted: Option<&IpAllowlist>) -> IpAddr {
    let peer = peer.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let client = match trusted {
        Some(trusted) => {
            client_ip(peer, headers, trusted, ForwardedHeader::XForwardedFor).unwrap_or(peer)
        }
        None => peer,
    };
    example_support::client_network(client)
}

/// The longest code taken: Contentstack's are far shorter.
const MAX_CODE_LEN: usize = 512;

impl AsTheApp {
    pub(crate) fn new(
        config: Option<&OAuthConfig>,
        store: &Store,
        trusted_proxies: Option<IpAllowlist>,
    ) -> Result<Self, reqwest::Error> {
        let Some(config) = config else {
            return Ok(Self(None));
        };
        let tokens = SealedTokens::new(store.clone(), Arc::clone(&config.sealing_key));
        // CMA calls follow no redirect: a redirect would carry the bearer token elsewhere.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(CMA_TIMEOUT)
            .build()?;
        Ok(Self(Some(Configured {
            oauth: ContentstackOAuth::new(config.client.clone(), config.region.clone(), tokens),
            http,
            exchanges: Arc::new(Exchanges::new()),
            trusted_proxies,
        })))
    }

    /// A CMA call's base URL and headers as the app for `installation` (a token refreshed
    /// first when it must be); `None` without OAuth.
    pub(crate) async fn cma(
        &self,
        installation: &Installation,
    ) -> Option<
        Result<
            countersign::contentstack::oauth::CmaCall,
            countersign::contentstack::oauth::OAuthError,
        >,
    > {
        let configured = self.0.as_ref()?;
        Some(configured.oauth.cma(installation).await)
    }

    fn get(&self) -> Result<&Configured, Rejection> {
        self.0.as_ref().ok_or_else(|| {
            Rejection::new(
                StatusCode::NOT_FOUND,
                "oauth_not_configured",
                "OAuth not configured",
                "set CONTENTSTACK_OAUTH_CLIENT_ID, CONTENTSTACK_OAUTH_CLIENT_SECRET and CONTENTSTACK_OAUTH_REDIRECT_URI",
            )
        })
    }
}

/// What the redirect after an install brings.
#[derive(serde::Deserialize)]
pub(crate) struct Redirect {
    code: Option<String>,
    location: Option<String>,
}

/// `GET /oauth/callback?code=..&location=..`: exchanges the code at the region `location`
/// names and keeps the app token of the installation the answer names. Nothing else is
/// trusted: whoever sends a code can only store the tokens Contentstack issues for it.
pub(crate) async fn callback(
    Extension(app): Extension<AsTheApp>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    redirect: Result<Query<Redirect>, QueryRejection>,
) -> AppResult<Response> {
    let app = app.get().map_err(IntoResponse::into_response)?;
    let Some((code, location)) = redirect.ok().and_then(|Query(r)| {
        let code = r.code.filter(|code| is_code(code))?;
        Some((code, r.location))
    }) else {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "oauth_callback_invalid",
            "Not an OAuth redirect",
            "the redirect brings ?code= (and ?location=)",
        )
        .into_response());
    };
    let client = client_of(
        peer.map(|Extension(ConnectInfo(peer))| peer.ip()),
        &headers,
        app.trusted_proxies.as_ref(),
    );
    let turn = app
        .exchanges
        .admit(client)
        .map_err(|why| Rejection::of(&reason::OAUTH_UNAVAILABLE, why).into_response())?;
    let installation = app
        .oauth
        .exchange(&code, location.as_deref(), None)
        .await
        .map_err(|error| {
            if matches!(
                error.kind(),
                OAuthErrorKind::InvalidGrant | OAuthErrorKind::Refused
            ) {
                turn.refused();
            }
            Rejection::from(error).into_response()
        })?;
    drop(turn);
    if installation.stack_api_key.is_none() {
        // An organization's installation: this app works in stacks, and nothing here would
        // ever use or forget its tokens.
        app.oauth
            .forget(&installation)
            .await
            .map_err(|error| Rejection::from(error).into_response())?;
        return Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "stack_required",
            "Stack app only",
            "the installation has no stack",
        )
        .into_response());
    }
    tracing::info!(
        organization = %installation.organization_uid,
        stack = installation.stack_api_key.as_deref().unwrap_or("-"),
        "the app is authorized for an installation"
    );
    Ok(Html(
        "<!doctype html><title>Installed</title><p>The app is installed. You can close this tab.</p>",
    )
    .into_response())
}

/// `GET /api/content-types`: the session's stack's content types, from the CMA as the app
/// (`GET /v3/content_types`; after a 401, once more with a refreshed token).
pub(crate) async fn content_types(
    Extension(app): Extension<AsTheApp>,
    session: AppSession,
) -> AppResult<Response> {
    let Configured { oauth, http, .. } = app.get().map_err(IntoResponse::into_response)?;
    stack_of(&session).map_err(IntoResponse::into_response)?;
    let answer = oauth
        .send(&Installation::from(&session), |call| {
            http.get(format!("{}/content_types", call.base_url))
                .headers(call.headers.clone())
        })
        .await
        .map_err(|error| Rejection::from(error).into_response())?;
    let status = answer.status();
    let body = read(answer).await?;
    if !status.is_success() {
        return Err(cma_failed(format!("the CMA answered {status}")));
    }
    // Checked to be JSON and handed on as it came, without building it in memory.
    serde_json::from_slice::<serde::de::IgnoredAny>(&body)
        .map_err(|_| cma_failed("the CMA answered what is not JSON".to_owned()))?;
    Ok(([(http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Whether `code` looks like an authorization code: short, and URL-safe characters only.
fn is_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The answer's body, at most [`MAX_CMA_ANSWER`] bytes.
async fn read(mut answer: reqwest::Response) -> AppResult<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|error| cma_failed(format!("the CMA's answer broke off: {error}")))?
    {
        if body.len() + chunk.len() > MAX_CMA_ANSWER {
            return Err(cma_failed(format!(
                "the CMA's answer is larger than {MAX_CMA_ANSWER} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The CMA failed: 502, with the detail in the log only.
fn cma_failed(detail: String) -> Response {
    Rejection::new(
        StatusCode::BAD_GATEWAY,
        "cma_failed",
        "Contentstack's API failed",
        detail,
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_its_ipv4_address_or_its_ipv6_64_however_it_arrives() {
        let of = |ip: &str| client_of(Some(ip.parse().unwrap()), &HeaderMap::new(), None);
        // A dual-stack listener sees IPv4 clients as mapped IPv6 addresses: each its own.
        assert_eq!(of("::ffff:198.51.100.7"), of("198.51.100.7"));
        assert_ne!(of("::ffff:198.51.100.7"), of("::ffff:203.0.113.9"));
        assert_eq!(of("2001:db8:1:2::1"), of("2001:db8:1:2:ffff::9"), "one /64");
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
        // Past a trusted proxy, the client its header names.
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        let proxies = IpAllowlist::new(["127.0.0.1/32"]).unwrap();
        assert_eq!(
            client_of(Some("127.0.0.1".parse().unwrap()), &headers, Some(&proxies)),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }
}
