//! Calling Contentful as the app: access tokens for the Content Management API, from the app's
//! key pair (feature `app-identity`).
//!
//! [`AppIdentity`] does what the toolkit's `getManagementToken` does (the wire format is in
//! [`countersign_core::contentful::app_identity`]), and what its users asked it to do:
//!
//! - **one token per space environment**, kept until shortly before it expires (the refresh
//!   margin, 60 s by default) and then replaced;
//! - **one fetch at a time**: while one caller fetches a space environment's token, the others
//!   wait for it and share its result, token or error, instead of each asking Contentful (the
//!   toolkit's callers hit `429`s that way);
//! - **rate limits honoured**: a `429` waits as long as `X-Contentful-RateLimit-Reset` (or
//!   `Retry-After`) says, up to a bound, then tries again;
//! - **bounded retries**: a `5xx` or a failed connection is retried with exponential backoff
//!   and jitter, four attempts in all by default; any other refusal is final;
//! - **the last good token** keeps serving while a refresh fails, until it expires;
//! - **the host is configurable** ([`EU_HOST`] for EU accounts), https only;
//! - typed errors ([`AccessTokenError`]), and tokens that no `Debug`, `Display` or log shows.
//!
//! The id is the **app definition id** (the toolkit names it `appInstallationId`, but it is
//! the definition's id). One client holds one key; it is cheap to clone and meant to be shared.
//!
//! ```no_run
//! use countersign::contentful::app_identity::AppIdentity;
//! use countersign::contentful::app_identity::AppKey;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = AppIdentity::new("5GqqNVnhR8ZPI3ZKOvpArP", AppKey::from_file("app-key.pem")?)
//!     .with_key_id("key-1")?;
//! let token = identity.access_token("space-id", "master").await?;
//! let entries = reqwest::Client::new()
//!     .get("https://api.contentful.com/spaces/space-id/environments/master/entries")
//!     .header(http::header::AUTHORIZATION, token.authorization()?)
//!     .send()
//!     .await?;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

// The core's wire format of the app identity, so that this module is the one place to look.
pub use countersign_core::contentful::app_identity::*;
use countersign_core::{ConfigError, ConfigErrorKind};

use crate::guard::Clock;
use crate::http_client::{describe, read_limited, secure_client};
use crate::metrics;

mod error;

pub use error::{AccessTokenError, AccessTokenErrorKind};

/// The default refresh margin: a token is replaced once it has less than this left.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// The default number of attempts per fetch (the first and three retries, as the toolkit).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// The longest a `429` is waited out by default; a longer reset is returned as an error.
pub const DEFAULT_MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(30);
/// The default bound of one exchange request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes read of an answer.
const MAX_ANSWER_LEN: usize = 64 * 1024;
/// How many space environments an identity keeps a token for; beyond it, the slots nobody is
/// using and whose token has expired go first, then enough others nobody is using to free a
/// tenth. Tokens are
/// asked for by installation, and installations are made by strangers: the map stays bounded.
pub const MAX_SLOTS: usize = 10_000;

/// An app's identity: its definition id and private key, and the access tokens it holds.
#[derive(Clone)]
pub struct AppIdentity {
    inner: Arc<Inner>,
}

struct Inner {
    app_definition_id: String,
    key: Arc<AppKey>,
    key_id: Option<String>,
    host: String,
    client: reqwest::Client,
    refresh_margin: Duration,
    max_attempts: u32,
    max_rate_limit_wait: Duration,
    clock: Clock,
    slots: Mutex<HashMap<(String, String), Arc<Slot>>>,
}

/// One space environment's token, and the fetch in progress.
#[derive(Default)]
struct Slot {
    /// Fetches finished, successful or not.
    finished: AtomicU64,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    token: Option<AccessToken>,
    /// The last fetch's error, with the value of `finished` it ended.
    failure: Option<(u64, AccessTokenError)>,
}

impl AppIdentity {
    /// The identity of the app `app_definition_id`, with its private key, against
    /// `https://api.contentful.com`.
    #[must_use]
    pub fn new(app_definition_id: impl Into<String>, key: AppKey) -> Self {
        Self {
            inner: Arc::new(Inner {
                app_definition_id: app_definition_id.into(),
                key: Arc::new(key),
                key_id: None,
                host: DEFAULT_HOST.to_owned(),
                client: secure_client(DEFAULT_REQUEST_TIMEOUT, &[]),
                refresh_margin: DEFAULT_REFRESH_MARGIN,
                max_attempts: DEFAULT_MAX_ATTEMPTS,
                max_rate_limit_wait: DEFAULT_MAX_RATE_LIMIT_WAIT,
                clock: Clock::system(),
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The key's id, put in the one-time token's header (needed when the app has several keys).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSetting`] when it is not a Contentful id.
    pub fn with_key_id(self, key_id: impl Into<String>) -> Result<Self, ConfigError> {
        let key_id = key_id.into();
        validate_id("key id", &key_id)?;
        Ok(self.reconfigure(|inner| inner.key_id = Some(key_id)))
    }

    /// The Content Management API's base URL: [`EU_HOST`] for EU accounts, or a local server
    /// in tests.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSetting`] when it is not an https base URL (plain http only
    /// to this machine).
    pub fn with_host(self, host: &str) -> Result<Self, ConfigError> {
        let host = validate_host(host)?.to_owned();
        Ok(self.reconfigure(|inner| inner.host = host))
    }

    /// A token is replaced once it has less than `margin` left (default 60 s).
    #[must_use]
    pub fn with_refresh_margin(self, margin: Duration) -> Self {
        self.reconfigure(|inner| inner.refresh_margin = margin.min(countersign_core::MAX_WINDOW))
    }

    /// Attempts per fetch, at least one (default 4).
    #[must_use]
    pub fn with_max_attempts(self, attempts: u32) -> Self {
        self.reconfigure(|inner| inner.max_attempts = attempts.max(1))
    }

    /// The longest a `429` is waited out (default 30 s); a longer reset is an error that says
    /// when to try again.
    #[must_use]
    pub fn with_max_rate_limit_wait(self, wait: Duration) -> Self {
        self.reconfigure(|inner| inner.max_rate_limit_wait = wait)
    }

    /// The bound of one exchange request (default 10 s).
    #[must_use]
    pub fn with_request_timeout(self, timeout: Duration) -> Self {
        self.reconfigure(|inner| inner.client = secure_client(timeout, &[]))
    }

    /// The clock that stamps one-time tokens and ages access tokens (tests).
    #[must_use]
    pub fn with_clock(self, clock: Clock) -> Self {
        self.reconfigure(|inner| inner.clock = clock)
    }

    /// The app definition id.
    #[must_use]
    pub fn app_definition_id(&self) -> &str {
        &self.inner.app_definition_id
    }

    /// An access token for `space_id`/`environment_id`: the one held while it has more than the
    /// refresh margin left, else a new one, fetched by one caller while the others wait.
    ///
    /// # Errors
    /// An [`AccessTokenError`] when no token could be had and none held is still valid.
    pub async fn access_token(
        &self,
        space_id: &str,
        environment_id: &str,
    ) -> Result<AccessToken, AccessTokenError> {
        let request = TokenRequest::new(
            &self.inner.host,
            space_id,
            environment_id,
            &self.inner.app_definition_id,
        )
        .map_err(AccessTokenError::config)?;
        let slot = self.slot(space_id, environment_id);
        let finished_before = slot.finished.load(Ordering::Acquire);
        let mut state = slot.state.lock().await;
        let now = self.inner.clock.now();
        if let Some(token) = &state.token
            && token.is_fresh(now, self.inner.refresh_margin)
        {
            return Ok(token.clone());
        }
        // A fetch that finished while this caller waited for it: share its failure rather
        // than ask again at once.
        if let Some((finished, error)) = &state.failure
            && *finished > finished_before
        {
            return self.held_or(&state, error.clone());
        }
        let result = self.fetch(&request).await;
        metrics::outcome(
            metrics::ACCESS_TOKEN_FETCHES,
            match &result {
                Ok(_) => "ok",
                Err(e) => match e.kind() {
                    AccessTokenErrorKind::RateLimited => "rate_limited",
                    AccessTokenErrorKind::Unavailable => "unavailable",
                    _ => "refused",
                },
            },
        );
        let finished = slot.finished.fetch_add(1, Ordering::AcqRel) + 1;
        match result {
            Ok(token) => {
                state.failure = None;
                state.token = Some(token.clone());
                Ok(token)
            }
            Err(error) => {
                tracing::warn!(
                    target: "countersign",
                    app = %self.inner.app_definition_id,
                    space = space_id,
                    environment = environment_id,
                    %error,
                    "no access token",
                );
                state.failure = Some((finished, error.clone()));
                self.held_or(&state, error)
            }
        }
    }

    /// Forgets the token of a space environment (after Contentful refused it, say).
    pub async fn forget(&self, space_id: &str, environment_id: &str) {
        let slot = self.slot(space_id, environment_id);
        slot.state.lock().await.token = None;
    }

    /// The token still held when a refresh failed, if it has not expired.
    fn held_or(
        &self,
        state: &State,
        error: AccessTokenError,
    ) -> Result<AccessToken, AccessTokenError> {
        match &state.token {
            Some(token) if token.is_fresh(self.inner.clock.now(), Duration::ZERO) => {
                Ok(token.clone())
            }
            _ => Err(error),
        }
    }

    fn slot(&self, space_id: &str, environment_id: &str) -> Arc<Slot> {
        let mut slots = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (space_id.to_owned(), environment_id.to_owned());
        if slots.len() >= MAX_SLOTS && !slots.contains_key(&key) {
            let now = self.inner.clock.now();
            let idle = |slot: &Arc<Slot>| Arc::strong_count(slot) == 1;
            slots.retain(|_, slot| {
                !idle(slot)
                    || slot.state.try_lock().is_ok_and(|state| {
                        state
                            .token
                            .as_ref()
                            .is_some_and(|token| token.is_fresh(now, Duration::ZERO))
                    })
            });
            // Still full of fresh tokens: enough idle ones go to free a tenth, not all.
            let mut excess = (slots.len() + 1).saturating_sub(MAX_SLOTS * 9 / 10);
            slots.retain(|_, slot| {
                let dropped = excess > 0 && idle(slot);
                excess -= usize::from(dropped);
                !dropped
            });
        }
        Arc::clone(slots.entry(key).or_default())
    }

    /// One fetch: attempts until a token, a final refusal, or the bound.
    async fn fetch(&self, request: &TokenRequest) -> Result<AccessToken, AccessTokenError> {
        let inner = &self.inner;
        let mut attempt = 0;
        loop {
            let last = attempt + 1 >= inner.max_attempts;
            let (error, wait) = match self.exchange(request).await? {
                Err(unreachable) => (unreachable, retry_delay(attempt)),
                Ok(Answer::Issued(token)) => return Ok(token),
                Ok(Answer::Refused(refusal)) => return Err(AccessTokenError::refused(refusal)),
                Ok(Answer::RateLimited(wait)) => {
                    let wait = wait.unwrap_or_else(|| retry_delay(attempt));
                    let error = AccessTokenError::rate_limited(wait);
                    if wait > inner.max_rate_limit_wait {
                        return Err(error);
                    }
                    (error, wait)
                }
                Ok(Answer::ServerError(status)) => (
                    AccessTokenError::unavailable(
                        format!("the host answered {status}"),
                        Some(status),
                    ),
                    retry_delay(attempt),
                ),
            };
            if last {
                return Err(error);
            }
            tracing::debug!(target: "countersign", attempt, ?wait, %error, "retrying the access token exchange");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One exchange request: `Err` when it cannot be made, `Ok(Err)` when the host could not be
    /// reached (to retry), `Ok(Ok)` with the host's answer.
    async fn exchange(
        &self,
        request: &TokenRequest,
    ) -> Result<Result<Answer, AccessTokenError>, AccessTokenError> {
        let inner = &self.inner;
        let jwt = one_time_token(
            &inner.key,
            &inner.app_definition_id,
            inner.key_id.as_deref(),
            inner.clock.now(),
        )
        .map_err(AccessTokenError::config)?;
        let authorization = TokenRequest::authorization(&jwt).map_err(|_| {
            AccessTokenError::config(ConfigError::new(
                ConfigErrorKind::InvalidKey,
                "the one-time token is not a header value",
            ))
        })?;
        let sent = inner
            .client
            .post(request.url())
            .header(http::header::AUTHORIZATION, authorization)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Ok(Err(AccessTokenError::unavailable(describe(&error), None)));
            }
        };
        let (status, headers) = (response.status(), response.headers().clone());
        let body = match read_limited(response, MAX_ANSWER_LEN, "the answer").await {
            Ok(body) => body,
            Err(_) if status.is_server_error() => Vec::new(),
            Err(reason) => return Ok(Err(AccessTokenError::unavailable(reason, Some(status)))),
        };
        Ok(Ok(read_answer(status, &headers, &body, inner.clock.now())))
    }

    fn reconfigure(mut self, change: impl FnOnce(&mut Inner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => change(inner),
            None => {
                let mut inner = Inner {
                    app_definition_id: self.inner.app_definition_id.clone(),
                    key: Arc::clone(&self.inner.key),
                    key_id: self.inner.key_id.clone(),
                    host: self.inner.host.clone(),
                    client: self.inner.client.clone(),
                    refresh_margin: self.inner.refresh_margin,
                    max_attempts: self.inner.max_attempts,
                    max_rate_limit_wait: self.inner.max_rate_limit_wait,
                    clock: self.inner.clock.clone(),
                    slots: Mutex::new(HashMap::new()),
                };
                change(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
        self
    }
}

impl fmt::Debug for AppIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppIdentity")
            .field("app_definition_id", &self.inner.app_definition_id)
            .field("key", &self.inner.key)
            .field("key_id", &self.inner.key_id)
            .field("host", &self.inner.host)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
