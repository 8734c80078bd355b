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
//! use countersign::contentstack::oauth::{ContentstackOAuth, MemoryTokenStore};
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

mod error;
mod refresh;
mod store;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use countersign_core::contentstack::Region;
use http::{HeaderMap, HeaderValue};

pub use countersign_core::contentstack::oauth::*;
pub use error::{OAuthError, OAuthErrorKind};
pub use store::{
    Installation, MemoryTokenStore, StoreError, StoreErrorKind, StoredTokens, TokenStore,
};

use crate::guard::Clock;
use crate::http_client::{describe, no_redirect_client};
use error::store_failed;
use refresh::{instance_name, stored};

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
            inner: configure(self.inner, change),
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
        self.inner
            .store
            .save(&installation, &stored)
            .await
            .map_err(store_failed)?;
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
    /// # async fn run(oauth: countersign::contentstack::oauth::ContentstackOAuth<countersign::contentstack::oauth::MemoryTokenStore>, installation: countersign::contentstack::oauth::Installation) -> Result<(), Box<dyn std::error::Error>> {
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
        self.inner
            .store
            .forget(installation)
            .await
            .map_err(store_failed)?;
        self.unsaved_tokens().remove(installation);
        self.refused_tokens().remove(installation);
        Ok(())
    }
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

/// `shared` changed by `change`, for a builder method: it must not have been cloned yet (a
/// clone would keep the old settings), and panics when it was.
fn configure<S>(shared: Arc<Inner<S>>, change: impl FnOnce(&mut Inner<S>)) -> Arc<Inner<S>> {
    match Arc::try_unwrap(shared) {
        Ok(mut inner) => {
            change(&mut inner);
            Arc::new(inner)
        }
        Err(shared) => panic!(
            "configure the ContentstackOAuth before cloning it ({} clones)",
            Arc::strong_count(&shared)
        ),
    }
}
