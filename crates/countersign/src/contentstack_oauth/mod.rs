//! Calling Contentstack as the app (feature `oauth`): OAuth tokens per installation, kept in a
//! [`TokenStore`] shared by the fleet, refreshed before they expire, one refresh per
//! installation at a time across every instance.
//!
//! [`ContentstackOAuth`] keeps **app tokens**, from the install flow (a user token would act
//! as that member, and is refused): it exchanges the code the redirect brings
//! ([`exchange`](ContentstackOAuth::exchange), at the region the redirect's `location` names;
//! a backend is a confidential client, with its secret and no PKCE verifier), hands out each
//! installation's access token ([`access_token`](ContentstackOAuth::access_token)), makes
//! Content Management API calls with your `reqwest` client ([`send`](ContentstackOAuth::send))
//! or gives what one needs ([`cma`](ContentstackOAuth::cma)), refreshes when less
//! than the margin is left (60 s, or half the token's lifetime if that is shorter), and
//! forgets an installation's tokens when your uninstall-event handler calls
//! [`forget`](ContentstackOAuth::forget).
//!
//! The [`Installation`] of a later call is what `exchange` returned; a UI location's session
//! acts for its own (`Installation::from(&session)`), and an installation event names its own
//! ([`Installation::of_event`]).
//!
//! - **One refresh per installation across the fleet.** A used refresh token may stop working,
//!   so two instances must never refresh with one. The store's lock makes one instance refresh;
//!   the others wait for the tokens it saves. Within one instance, callers share one refresh.
//! - **The rotated refresh token first.** The new token set, refresh token included, is saved
//!   before the new access token is handed to anyone: an instance that stopped right after
//!   could otherwise leave the store with a dead refresh token. If the store fails to keep it
//!   (tried three times), the set is kept in this instance's memory and written at the next
//!   call: the refresh token it replaces is spent.
//! - **A refused refresh token forgets nothing.** After `invalid_grant` the store is read
//!   again for a set another instance saved; if there is none, the call answers
//!   [`OAuthErrorKind::NotAuthorized`] and the tokens stay, since another instance may still
//!   be saving the set it refreshed with them. Tokens go with the uninstall ([`forget`](ContentstackOAuth::forget)) or
//!   a new authorization.
//! - **A 401 from the CMA** refreshes once
//!   ([`cma_after_unauthorized`](ContentstackOAuth::cma_after_unauthorized)) and the call is
//!   made again.
//! - No token, secret or code reaches `Debug`, a log or an error text.
//!
//! ```no_run
//! use countersign::contentstack::Region;
//! use countersign::contentstack::oauth::{Client, ClientSecret};
//! use countersign::contentstack_oauth::{ContentstackOAuth, MemoryTokenStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new("client-id", "https://my.app/oauth/callback")
//!     .with_secret(ClientSecret::new(std::env::var("OAUTH_CLIENT_SECRET")?)?);
//! let oauth = ContentstackOAuth::new(client, Region::Na, MemoryTokenStore::new());
//!
//! // GET /oauth/callback?code=..&location=EU
//! let installation = oauth.exchange("the-code", Some("EU"), None).await?;
//! // Later, as the app, in that installation's stack:
//! let http = reqwest::Client::new();
//! let mut call = oauth.cma(&installation).await?;
//! let mut types = http.get(format!("{}/content_types", call.base_url)).headers(call.headers.clone()).send().await?;
//! if types.status() == 401 {
//!     call = oauth.cma_after_unauthorized(&installation, &call).await?;
//!     types = http.get(format!("{}/content_types", call.base_url)).headers(call.headers.clone()).send().await?;
//! }
//! # let _ = types;
//! # Ok(())
//! # }
//! ```

mod store;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use countersign_core::contentstack::Region;
use countersign_core::contentstack::oauth::{
    AccessToken, Answer, AuthorizationType, Client, CodeVerifier, FORM_CONTENT_TYPE, RefreshToken,
    TokenSet, read_answer,
};
use countersign_core::reason::{self, Reason};
use http::{HeaderMap, HeaderValue};

pub use store::{
    Installation, MemoryTokenStore, StoreError, StoreErrorKind, StoredTokens, TokenStore,
};

use crate::Clock;
use crate::http_client::{describe, no_redirect_client, read_limited};

/// The longest refresh margin: a token is refreshed once it has less than this left (or less
/// than half its lifetime, if that is shorter).
pub const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How long an instance may hold an installation's refresh lock.
pub const REFRESH_LEASE: Duration = Duration::from_secs(30);
/// The bound of one token request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes read of a token answer.
const MAX_ANSWER_LEN: usize = 64 * 1024;
/// How often an instance that waits for another's refresh looks at the store.
const WAIT_STEP: Duration = Duration::from_millis(50);

/// OAuth tokens per installation, for calling Contentstack as the app. See the
/// [module docs](self). Cheap to clone, whatever the store; clones share everything.
pub struct ContentstackOAuth<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for ContentstackOAuth<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<S> {
    client: Client,
    region: Region,
    store: S,
    http: reqwest::Client,
    clock: Clock,
    /// This instance's name in the store's locks.
    owner: String,
    /// One refresh at a time per installation within this instance.
    refreshing: Mutex<HashMap<Installation, Arc<tokio::sync::Mutex<()>>>>,
    /// Token sets a refresh brought that the store failed to keep: the refresh token they
    /// replace is spent at Developer Hub, so they are kept here and written at the next call.
    unsaved: Mutex<HashMap<Installation, Unsaved>>,
    /// The refresh token each installation had refused with `invalid_grant`: not sent again
    /// (a dead installation would spend the app's requests at Developer Hub on every call)
    /// until the stored one changes.
    refused: Mutex<HashMap<Installation, RefreshToken>>,
}

/// A refreshed set not yet in the store, and the refresh token the store still holds (what
/// the write compares with).
#[derive(Clone)]
struct Unsaved {
    stored_refresh: RefreshToken,
    tokens: StoredTokens,
}

/// How often a refreshed set's write is tried before it is kept in memory for the next call.
const SAVE_TRIES: u32 = 3;

impl<S: TokenStore> ContentstackOAuth<S> {
    /// A client of the app's OAuth `client`, in `region` (the app's default; a code is
    /// exchanged at its redirect's location), keeping tokens in `store`.
    pub fn new(client: Client, region: Region, store: S) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                region,
                store,
                http: no_redirect_client(REQUEST_TIMEOUT),
                clock: Clock::system(),
                owner: instance_name(),
                refreshing: Mutex::new(HashMap::new()),
                unsaved: Mutex::new(HashMap::new()),
                refused: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The clock the expiries are read with (a test's).
    #[must_use]
    pub fn with_clock(self, clock: Clock) -> Self {
        self.reconfigure(|inner| inner.clock = clock)
    }

    fn reconfigure(self, change: impl FnOnce(&mut Inner<S>)) -> Self {
        Self {
            inner: crate::configure(self.inner, "ContentstackOAuth", change),
        }
    }

    /// Exchanges the code a redirect brought, at the region its `location` names (the
    /// client's region when it has none; a custom base URL serves every location), with the
    /// PKCE `verifier` of a public client; keeps the tokens for the installation the answer
    /// names and returns it.
    ///
    /// # Errors
    /// [`OAuthErrorKind::InvalidLocation`], a refused or failed exchange, or the store.
    pub async fn exchange(
        &self,
        code: &str,
        location: Option<&str>,
        verifier: Option<&CodeVerifier>,
    ) -> Result<Installation, OAuthError> {
        let region = match location {
            Some(location) => self
                .inner
                .region
                .for_location(location)
                .map_err(|e| OAuthError::new(OAuthErrorKind::InvalidLocation, e.to_string()))?,
            None => self.inner.region.clone(),
        };
        let form = self
            .inner
            .client
            .exchange_form(code, verifier)
            .map_err(|e| OAuthError::new(OAuthErrorKind::Misconfigured, e.to_string()))?;
        let (issued, answered_at) = self.request(&region, form).await?;
        if issued.authorization_type != Some(AuthorizationType::App) {
            // A user token acts as that user: kept under the installation, it would replace
            // the app's own token and make every later call as that member.
            return Err(OAuthError::new(
                OAuthErrorKind::Refused,
                "the code authorized a user token; this client keeps app tokens (the install flow)",
            ));
        }
        let installation = Installation {
            organization_uid: issued.organization_uid.clone().ok_or_else(|| {
                OAuthError::new(
                    OAuthErrorKind::Refused,
                    "the token answer names no organization_uid",
                )
            })?,
            stack_api_key: issued.stack_api_key.clone(),
        };
        // By Contentstack's clock: its answer's `Date` (to the second).
        let authorized_at = answered_at.unwrap_or_else(|| self.inner.clock.now());
        let stored = stored(issued, None, &region, self.inner.clock.now(), authorized_at);
        self.inner.store.save(&installation, &stored).await?;
        Ok(installation)
    }

    /// The installation's access token: the stored one while more than the margin is left,
    /// else a fresh one (refreshed here, or by the instance that holds the lock).
    ///
    /// # Errors
    /// [`OAuthErrorKind::NotAuthorized`] when the installation has no tokens (never
    /// authorized, uninstalled, or its refresh token was refused), a failed refresh, or the
    /// store.
    pub async fn access_token(
        &self,
        installation: &Installation,
    ) -> Result<AccessToken, OAuthError> {
        Ok(self.fresh(installation, None).await?.access_token)
    }

    /// What a Content Management API call as the app for `installation` needs: the base URL
    /// of the installation's region (`https://eu-api.contentstack.com/v3`), and the headers
    /// `authorization: Bearer ..` and `api_key` for a stack's installation or
    /// `organization_uid` for an organization's. After a 401, pass the call to
    /// [`cma_after_unauthorized`](Self::cma_after_unauthorized) and make it once more.
    ///
    /// # Errors
    /// As [`access_token`](Self::access_token).
    pub async fn cma(&self, installation: &Installation) -> Result<CmaCall, OAuthError> {
        let tokens = self.fresh(installation, None).await?;
        self.call(installation, tokens)
    }

    /// The call again after the CMA answered 401 to `rejected`: with a refreshed token (one
    /// refresh, however many callers were refused).
    ///
    /// # Errors
    /// As [`access_token`](Self::access_token).
    pub async fn cma_after_unauthorized(
        &self,
        installation: &Installation,
        rejected: &CmaCall,
    ) -> Result<CmaCall, OAuthError> {
        let tokens = self
            .fresh(installation, Some(&rejected.access_token))
            .await?;
        self.call(installation, tokens)
    }

    /// Sends the Content Management API request that `build` makes of a call (its base URL
    /// and headers) as the app for `installation`; if the CMA answers 401, sends the request
    /// `build` makes of a call with a refreshed token, once. The answer is the CMA's, whatever
    /// its status. Your HTTP client, your request:
    ///
    /// ```no_run
    /// # async fn run(oauth: countersign::contentstack_oauth::ContentstackOAuth<countersign::contentstack_oauth::MemoryTokenStore>, installation: countersign::contentstack_oauth::Installation) -> Result<(), Box<dyn std::error::Error>> {
    /// let http = reqwest::Client::new();
    /// let answer = oauth
    ///     .send(&installation, |call| {
    ///         http.get(format!("{}/content_types", call.base_url)).headers(call.headers.clone())
    ///     })
    ///     .await?;
    /// # let _ = answer;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`access_token`](Self::access_token), and [`OAuthErrorKind::CmaUnavailable`] when
    /// the CMA did not answer.
    pub async fn send(
        &self,
        installation: &Installation,
        build: impl Fn(&CmaCall) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OAuthError> {
        let send = |call: &CmaCall| {
            let request = build(call);
            async move {
                request.send().await.map_err(|error| {
                    OAuthError::new(
                        OAuthErrorKind::CmaUnavailable,
                        format!("the CMA did not answer: {}", describe(&error)),
                    )
                })
            }
        };
        let call = self.cma(installation).await?;
        let answer = send(&call).await?;
        if answer.status() != http::StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        let call = self.cma_after_unauthorized(installation, &call).await?;
        send(&call).await
    }

    fn call(
        &self,
        installation: &Installation,
        tokens: StoredTokens,
    ) -> Result<CmaCall, OAuthError> {
        let region = self.region_of(&tokens);
        let mut headers = HeaderMap::new();
        let authorization = tokens.access_token.authorization().map_err(|_| {
            OAuthError::new(
                OAuthErrorKind::Refused,
                "the access token cannot be a header",
            )
        })?;
        headers.insert(http::header::AUTHORIZATION, authorization);
        let (name, value) = match &installation.stack_api_key {
            Some(stack) => ("api_key", stack),
            None => ("organization_uid", &installation.organization_uid),
        };
        let value = HeaderValue::from_str(value).map_err(|_| {
            OAuthError::new(
                OAuthErrorKind::Refused,
                format!("the {name} cannot be a header"),
            )
        })?;
        headers.insert(name, value);
        Ok(CmaCall {
            base_url: region.cma_base_url(),
            headers,
            access_token: tokens.access_token,
        })
    }

    /// Forgets the installation's tokens (on its uninstall event).
    ///
    /// # Errors
    /// The store failed.
    pub async fn forget(&self, installation: &Installation) -> Result<(), OAuthError> {
        self.inner.store.forget(installation).await?;
        self.unsaved_tokens().remove(installation);
        self.refused_tokens().remove(installation);
        Ok(())
    }

    /// The stored tokens if still good (and not `rejected`), else refreshed ones.
    async fn fresh(
        &self,
        installation: &Installation,
        rejected: Option<&AccessToken>,
    ) -> Result<StoredTokens, OAuthError> {
        let (seen, _) = self.current(installation).await?;
        if rejected != Some(&seen.access_token) && is_fresh(&seen, self.inner.clock.now()) {
            return Ok(seen);
        }
        // One refresh at a time in this instance: the others wait here, then find it done.
        let gate = {
            let mut refreshing = self
                .inner
                .refreshing
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(refreshing.entry(installation.clone()).or_default())
        };
        let turn = gate.lock().await;
        let outcome = self.refresh_in_fleet(installation, &seen).await;
        drop(turn);
        self.inner
            .refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, gate| Arc::strong_count(gate) > 1);
        outcome
    }

    /// Tokens newer than `seen` that have not expired: another caller's refresh, to use
    /// rather than refresh again (even within the margin: a token issued with a short life
    /// would otherwise be refreshed by every waiting caller in turn).
    fn newer(&self, seen: &StoredTokens, current: StoredTokens) -> Option<StoredTokens> {
        (current.access_token != seen.access_token && self.inner.clock.now() < current.expires_at)
            .then_some(current)
    }

    /// Refreshes under the store's lock, or waits for the instance that holds it.
    async fn refresh_in_fleet(
        &self,
        installation: &Installation,
        seen: &StoredTokens,
    ) -> Result<StoredTokens, OAuthError> {
        let store = &self.inner.store;
        let waited_since = std::time::Instant::now();
        loop {
            if let Some(newer) = self.newer(seen, self.current(installation).await?.0) {
                return Ok(newer);
            }
            if store
                .lock(installation, &self.inner.owner, REFRESH_LEASE)
                .await?
            {
                let outcome = self.refresh(installation, seen).await;
                if let Err(error) = store.unlock(installation, &self.inner.owner).await {
                    tracing::warn!(target: "countersign", %error, "could not release the refresh lock; it lapses with its lease");
                }
                return outcome;
            }
            if waited_since.elapsed() > REFRESH_LEASE {
                return Err(OAuthError::new(
                    OAuthErrorKind::Unavailable,
                    "another instance held the refresh lock for longer than its lease",
                ));
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    /// With the lock held: the stored tokens read again (another instance may have refreshed
    /// just before), and refreshed if they are still what this caller saw. The outcome is
    /// written only if the stored refresh token is still the one used, and the new set is
    /// saved before it is used; if the store fails, the set is kept here and written at the
    /// next call (the refresh token it replaces is spent). A refresh token refused with
    /// `invalid_grant` forgets nothing: the set may be one another instance is still saving
    /// (it refreshed with it, then stalled), and an uninstall forgets tokens by itself.
    async fn refresh(
        &self,
        installation: &Installation,
        seen: &StoredTokens,
    ) -> Result<StoredTokens, OAuthError> {
        let (tokens, stored_refresh) = self.current(installation).await?;
        if let Some(newer) = self.newer(seen, tokens.clone()) {
            return Ok(newer);
        }
        let refresh_token = tokens.refresh_token.clone().ok_or_else(|| {
            OAuthError::new(
                OAuthErrorKind::NotAuthorized,
                "the installation's tokens have no refresh token: authorize the app again",
            )
        })?;
        let refused = || {
            OAuthError::new(
                OAuthErrorKind::NotAuthorized,
                "the installation's refresh token was refused: authorize the app again",
            )
        };
        if self.refused_tokens().get(installation) == Some(&refresh_token) {
            return Err(refused());
        }
        let region = self.region_of(&tokens);
        let form = self.inner.client.refresh_form(&refresh_token);
        match self.request(&region, form).await {
            Ok((issued, _)) => {
                let renewed = stored(
                    issued,
                    Some(refresh_token.clone()),
                    &region,
                    self.inner.clock.now(),
                    tokens.authorized_at,
                );
                let Some(stored_refresh) = stored_refresh else {
                    return Ok(renewed);
                };
                let mut saved = self.save(installation, &stored_refresh, &renewed).await;
                if saved.as_ref().is_ok_and(|saved| !saved) && stored_refresh != refresh_token {
                    // The set this refresh started from (kept in memory) reached the store
                    // meanwhile: write over it.
                    saved = self.save(installation, &refresh_token, &renewed).await;
                }
                match saved {
                    Ok(true) => Ok(renewed),
                    // Replaced meanwhile (another refresh, an uninstall, a new authorization):
                    // what is stored now wins.
                    Ok(false) => self.load(installation).await,
                    Err(error) => {
                        tracing::error!(target: "countersign", %error, "could not keep an installation's refreshed tokens: kept in memory, and written at its next call");
                        self.unsaved_tokens().insert(
                            installation.clone(),
                            Unsaved {
                                stored_refresh,
                                tokens: renewed.clone(),
                            },
                        );
                        Ok(renewed)
                    }
                }
            }
            Err(error) if error.kind == OAuthErrorKind::InvalidGrant => {
                // Another instance may have refreshed with it a moment ago: its tokens are the
                // good ones, if it saved them.
                if let Some(newer) = self.newer(seen, self.current(installation).await?.0) {
                    return Ok(newer);
                }
                tracing::warn!(target: "countersign", reason = %error.message, "an installation's refresh token was refused: it must authorize the app again");
                self.refused_tokens()
                    .insert(installation.clone(), refresh_token);
                Err(refused())
            }
            Err(error) => Err(error),
        }
    }

    /// Writes a refreshed set over `stored_refresh`, tried [`SAVE_TRIES`] times on a store
    /// error: whether the store still held `stored_refresh`.
    async fn save(
        &self,
        installation: &Installation,
        stored_refresh: &RefreshToken,
        tokens: &StoredTokens,
    ) -> Result<bool, OAuthError> {
        let mut wait = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .inner
                .store
                .replace(installation, stored_refresh, Some(tokens))
                .await
            {
                Ok(replaced) => return Ok(replaced),
                Err(error) if tries >= SAVE_TRIES => return Err(error.into()),
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
            }
        }
    }

    fn refused_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<Installation, RefreshToken>> {
        self.inner
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn unsaved_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<Installation, Unsaved>> {
        self.inner
            .unsaved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The installation's tokens as this instance knows them, and the refresh token the store
    /// holds (what a refresh's write compares with): a set the store failed to keep is written
    /// first, and used while the store still fails.
    async fn current(
        &self,
        installation: &Installation,
    ) -> Result<(StoredTokens, Option<RefreshToken>), OAuthError> {
        let unsaved = self.unsaved_tokens().get(installation).cloned();
        if let Some(unsaved) = unsaved {
            match self
                .inner
                .store
                .replace(installation, &unsaved.stored_refresh, Some(&unsaved.tokens))
                .await
            {
                Ok(replaced) => {
                    // Unless a later refresh kept a newer set meanwhile.
                    let mut unsaved_now = self.unsaved_tokens();
                    if unsaved_now
                        .get(installation)
                        .is_some_and(|now| now.tokens.access_token == unsaved.tokens.access_token)
                    {
                        unsaved_now.remove(installation);
                    }
                    drop(unsaved_now);
                    if replaced {
                        tracing::info!(target: "countersign", "an installation's refreshed tokens were kept after a store error");
                    }
                }
                Err(_) => {
                    return Ok((unsaved.tokens, Some(unsaved.stored_refresh)));
                }
            }
        }
        let tokens = self.load(installation).await?;
        let stored_refresh = tokens.refresh_token.clone();
        Ok((tokens, stored_refresh))
    }

    async fn load(&self, installation: &Installation) -> Result<StoredTokens, OAuthError> {
        self.inner.store.load(installation).await?.ok_or_else(|| {
            OAuthError::new(
                OAuthErrorKind::NotAuthorized,
                "the installation has no tokens: it never authorized the app, or was uninstalled",
            )
        })
    }

    fn region_of(&self, tokens: &StoredTokens) -> Region {
        self.inner
            .region
            .for_location(&tokens.region)
            .unwrap_or_else(|_| self.inner.region.clone())
    }

    /// Posts `form` to `region`'s token endpoint: the token set, and when the endpoint
    /// answered by its own clock (its `Date`), if it said.
    async fn request(
        &self,
        region: &Region,
        form: String,
    ) -> Result<(TokenSet, Option<SystemTime>), OAuthError> {
        let url = region.token_url();
        let response = self
            .inner
            .http
            .post(&url)
            .header(http::header::CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(form)
            .send()
            .await
            .map_err(|e| OAuthError::new(OAuthErrorKind::Unavailable, describe(&e)))?;
        let status = response.status();
        let answered_at = response
            .headers()
            .get(http::header::DATE)
            .and_then(|date| date.to_str().ok())
            .and_then(|date| httpdate::parse_http_date(date).ok());
        let body = read_limited(response, MAX_ANSWER_LEN, "the token answer")
            .await
            .map_err(|e| OAuthError::new(OAuthErrorKind::Unavailable, e))?;
        match read_answer(status, &body, self.inner.clock.now()) {
            Answer::Issued(tokens) => Ok((tokens, answered_at)),
            Answer::InvalidGrant(refusal) => Err(OAuthError::new(
                OAuthErrorKind::InvalidGrant,
                refusal.to_string(),
            )),
            Answer::Refused(refusal) => Err(OAuthError::new(
                OAuthErrorKind::Refused,
                refusal.to_string(),
            )),
            Answer::Unavailable(status) => Err(OAuthError::new(
                OAuthErrorKind::Unavailable,
                format!("the token endpoint answered {status}"),
            )),
        }
    }
}

/// A name for this instance in the store's locks: random, or (without a random source) the
/// process, the time and a counter, which no other instance shares.
fn instance_name() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if let Ok(random) = countersign_core::random_hex(16) {
        return random;
    }
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{nanos}-{count}", std::process::id())
}

/// What is kept of an issued set: the refresh token it brought, or the one it was refreshed
/// with when it brought none; authorized at `authorized_at` (Contentstack's clock).
fn stored(
    issued: TokenSet,
    previous: Option<RefreshToken>,
    region: &Region,
    now: SystemTime,
    authorized_at: SystemTime,
) -> StoredTokens {
    StoredTokens {
        authorized_at,
        lifetime: issued.expires_at.duration_since(now).unwrap_or_default(),
        access_token: issued.access_token,
        refresh_token: issued.refresh_token.or(previous),
        expires_at: issued.expires_at,
        region: issued
            .location
            .filter(|location| region.for_location(location).is_ok())
            .unwrap_or_else(|| region.location().to_owned()),
    }
}

/// Whether more than the margin is left: 60 s, or half the lifetime if that is less.
fn is_fresh(tokens: &StoredTokens, now: SystemTime) -> bool {
    let margin = MAX_REFRESH_MARGIN.min(tokens.lifetime / 2);
    now.checked_add(margin)
        .is_some_and(|later| later < tokens.expires_at)
}

impl<S> fmt::Debug for ContentstackOAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentstackOAuth")
            .field("client_id", &self.inner.client.client_id())
            .field("region", &self.inner.region)
            .finish_non_exhaustive()
    }
}

/// A Content Management API call's base URL and headers ([`ContentstackOAuth::cma`]).
/// `Debug` shows no token.
#[derive(Debug, Clone)]
pub struct CmaCall {
    /// The installation's region's CMA, version included: append the path (`/content_types`).
    pub base_url: String,
    /// `authorization` (marked sensitive), and `api_key` or `organization_uid`.
    pub headers: HeaderMap,
    /// The access token in `authorization`, to say which one a 401 refused.
    pub access_token: AccessToken,
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    kind: OAuthErrorKind,
    message: String,
}

/// The kinds of [`OAuthError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OAuthErrorKind {
    /// The installation has no usable tokens: authorize the app again.
    NotAuthorized,
    /// The code or refresh token was used, expired or revoked (`400 invalid_grant`).
    InvalidGrant,
    /// The token endpoint refused for another reason (client id or secret, redirect URI), or
    /// answered what is not a token set.
    Refused,
    /// The token endpoint or the store could not answer now: try again later.
    Unavailable,
    /// A redirect's `location` that is not one of the seven regions.
    InvalidLocation,
    /// This side's setup: a public client exchanging a code without its PKCE verifier.
    Misconfigured,
    /// The token store failed.
    Store,
    /// The Content Management API did not answer ([`ContentstackOAuth::send`]).
    CmaUnavailable,
}

impl OAuthErrorKind {
    /// Why, from the [catalogue](countersign_core::reason): the code and the HTTP status a
    /// backend answers with (`Rejection::of(error.kind().reason(), error.message())`).
    #[must_use]
    pub const fn reason(self) -> &'static Reason {
        match self {
            Self::NotAuthorized => &reason::OAUTH_NOT_AUTHORIZED,
            Self::InvalidGrant => &reason::OAUTH_INVALID_GRANT,
            Self::Refused => &reason::OAUTH_REFUSED,
            Self::Unavailable => &reason::OAUTH_UNAVAILABLE,
            Self::InvalidLocation => &reason::OAUTH_INVALID_LOCATION,
            Self::Misconfigured => &reason::OAUTH_MISCONFIGURED,
            Self::Store => &reason::OAUTH_STORE_UNAVAILABLE,
            Self::CmaUnavailable => &reason::CMA_UNAVAILABLE,
        }
    }
}

impl OAuthError {
    fn new(kind: OAuthErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Why.
    #[must_use]
    pub fn kind(&self) -> OAuthErrorKind {
        self.kind
    }

    /// What happened, without any token or secret.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        Self::new(OAuthErrorKind::Store, error.to_string())
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OAuthError {}
