//! Calling Contentstack as the app: `GET /oauth/callback` (where Contentstack sends the admin
//! after installing the app) and `GET /api/content-types` (the session's stack's content
//! types, read from the Content Management API as the app).
//!
//! The tokens are the installation's, kept sealed in the app's database ([`SealedTokens`]); a
//! session reaches only the tokens of its own organization and stack.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use countersign::Rejection;
use countersign::contentstack_oauth::{ContentstackOAuth, Installation};
use countersign::reason;
use countersign::session::AppSession;
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
    /// The code exchanges under way: the callback is open to anyone, and each exchange
    /// spends the app's requests at the token endpoint.
    exchanges: Arc<Semaphore>,
}

/// The most code exchanges at once; beyond, 503 `oauth_unavailable` with `Retry-After`.
const MAX_EXCHANGES: usize = 8;
/// The longest code taken: Contentstack's are far shorter.
const MAX_CODE_LEN: usize = 512;

impl AsTheApp {
    pub(crate) fn new(config: Option<&OAuthConfig>, store: &Store) -> Result<Self, reqwest::Error> {
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
            exchanges: Arc::new(Semaphore::new(MAX_EXCHANGES)),
        })))
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
    let Ok(_turn) = Arc::clone(&app.exchanges).try_acquire_owned() else {
        return Err(Rejection::of(
            &reason::OAUTH_UNAVAILABLE,
            "too many code exchanges at once",
        )
        .into_response());
    };
    let installation = app
        .oauth
        .exchange(&code, location.as_deref(), None)
        .await
        .map_err(|error| Rejection::from(error).into_response())?;
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
