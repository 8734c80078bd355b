//! Contentstack's public key, fetched from the region's well-known endpoint, cached and
//! refreshed.
//!
//! ```no_run
//! use countersign::contentstack::{KeySource, Region};
//! use countersign::contentstack::well_known::WellKnownKeys;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = WellKnownKeys::for_region(&"eu".parse::<Region>()?);
//! // Optional: fetch at start-up, so the first webhook does not wait.
//! keys.prefetch().await?;
//! let key_set = keys.keys().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Behaviour
//!
//! - The key is fetched on first use, or by [`prefetch`](WellKnownKeys::prefetch), and kept.
//! - Once it is older than the refresh interval (an hour by default) it is refetched in the
//!   background, while the cached key keeps serving.
//! - When a signature fails against the cached key, [`refresh`](KeySource::refresh) refetches,
//!   at most once per minimum interval (a minute by default), so that a rotated key is picked
//!   up and a flood of forged requests cannot turn into a flood of fetches.
//! - Fetches are single-flight: any number of concurrent requests cause one fetch.
//! - When the endpoint is down, slow, or answers garbage, the last good key keeps serving.
//! - With no key at all, [`keys`](KeySource::keys) reports [`KeyUnavailable`]: the layer then
//!   answers 503 so that Contentstack retries, never "invalid signature".
//! - Every fetch has a bounded timeout, and answers over 64 KiB are refused.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use countersign_core::contentstack::{
    KeySet, KeySource, KeyUnavailable, Region, is_trusted_key_url,
};
use countersign_core::{ConfigError, ConfigErrorKind};

use crate::http_client::{describe, read_limited, secure_client};
use crate::metrics;

/// How often the key is refetched by default: hourly.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
/// How soon after a fetch a failed signature may cause another by default: one minute.
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// The bound on one fetch by default: 10 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// While there is no key, how soon after a failed fetch another may start: one second.
const NO_KEY_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// The largest key document accepted.
const MAX_DOCUMENT_LEN: usize = 64 * 1024;

/// Contentstack's public key from `https://<app host>/.well-known/public-keys.json`. Cheap to
/// clone: clones share the cache.
#[derive(Clone)]
pub struct WellKnownKeys {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    client: reqwest::Client,
    timeout: Duration,
    roots: Vec<reqwest::Certificate>,
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    state: RwLock<State>,
    /// Held by the one task that fetches; the others wait for its result.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    last_error: Option<String>,
}

impl WellKnownKeys {
    /// The key of a region (or of a custom base URL).
    ///
    /// # Panics
    /// Never for the built-in regions; see [`from_url`](Self::from_url).
    #[must_use]
    pub fn for_region(region: &Region) -> Self {
        Self::build(region.public_keys_url(), DEFAULT_TIMEOUT)
    }

    /// The key document at `url` (a full URL of a `public-keys.json`).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidRegion`] unless `url` is an `https://` URL, or an `http://`
    /// URL of this machine ([`is_trusted_key_url`]).
    pub fn from_url(url: impl Into<String>) -> Result<Self, ConfigError> {
        let url = url.into();
        if !is_trusted_key_url(&url) || reqwest::Url::parse(&url).is_err() {
            return Err(ConfigError::new(
                ConfigErrorKind::InvalidRegion,
                format!(
                    "keys are fetched from an https:// URL (plain http:// to this machine excepted), not {url:?}"
                ),
            ));
        }
        Ok(Self::build(url, DEFAULT_TIMEOUT))
    }

    fn build(url: String, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                url,
                client: secure_client(timeout, &[]),
                timeout,
                roots: Vec::new(),
                refresh_interval: DEFAULT_REFRESH_INTERVAL,
                min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
                state: RwLock::new(State::default()),
                fetching: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn reconfigure(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            url: shared.url.clone(),
            client: shared.client.clone(),
            timeout: shared.timeout,
            roots: shared.roots.clone(),
            refresh_interval: shared.refresh_interval,
            min_refetch_interval: shared.min_refetch_interval,
            state: RwLock::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        });
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Trusts the certificate authority in `pem` besides the system's: a key server behind a
    /// private PKI, or a local one in tests.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`] when `pem` holds no `CERTIFICATE` block.
    pub fn with_root_certificate(self, pem: &str) -> Result<Self, ConfigError> {
        let invalid = |why: String| ConfigError::new(ConfigErrorKind::InvalidKey, why);
        let blocks = pem::parse_many(pem).map_err(|e| invalid(format!("not PEM: {e}")))?;
        let roots = blocks
            .iter()
            .filter(|block| block.tag() == "CERTIFICATE")
            .map(|block| reqwest::Certificate::from_der(block.contents()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("not a certificate: {e}")))?;
        if roots.is_empty() {
            return Err(invalid("the PEM holds no `CERTIFICATE` block".to_owned()));
        }
        Ok(self.reconfigure(|inner| {
            inner.roots.extend(roots);
            inner.client = secure_client(inner.timeout, &inner.roots);
        }))
    }

    /// How old the cached key may get before it is refetched in the background.
    #[must_use]
    pub fn with_refresh_interval(self, interval: Duration) -> Self {
        self.reconfigure(|inner| inner.refresh_interval = interval)
    }

    /// How soon after a fetch a failed signature may cause another fetch.
    #[must_use]
    pub fn with_min_refetch_interval(self, interval: Duration) -> Self {
        self.reconfigure(|inner| inner.min_refetch_interval = interval)
    }

    /// The bound on one fetch (connecting, sending, reading).
    #[must_use]
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.reconfigure(|inner| {
            inner.timeout = timeout;
            inner.client = secure_client(timeout, &inner.roots);
        })
    }

    /// Where the key is fetched from.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Fetches the key now (for instance at start-up) unless one is cached.
    ///
    /// # Errors
    /// [`KeyUnavailable`] when the fetch fails and no key is cached.
    pub async fn prefetch(&self) -> Result<Arc<KeySet>, KeyUnavailable> {
        match self.cached() {
            Some(keys) => Ok(keys),
            None => self.inner.fetch_once(Instant::now()).await,
        }
    }

    /// The cached keys, if any, without fetching.
    #[must_use]
    pub fn cached(&self) -> Option<Arc<KeySet>> {
        self.inner.read().keys.clone()
    }
}

impl std::fmt::Debug for WellKnownKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.read();
        f.debug_struct("WellKnownKeys")
            .field("url", &self.inner.url)
            .field("keys", &state.keys.as_ref().map(|k| k.len()))
            .field("last_error", &state.last_error)
            .finish_non_exhaustive()
    }
}

impl KeySource for WellKnownKeys {
    async fn keys(&self) -> Result<Arc<KeySet>, KeyUnavailable> {
        let (cached, stale) = {
            let state = self.inner.read();
            let stale = state
                .fetched_at
                .is_none_or(|at| at.elapsed() >= self.inner.refresh_interval);
            (state.keys.clone(), stale)
        };
        match cached {
            Some(keys) => {
                if stale {
                    self.refresh_in_background();
                }
                Ok(keys)
            }
            None => {
                let recently_failed = self
                    .inner
                    .read()
                    .attempted_at
                    .is_some_and(|at| at.elapsed() < NO_KEY_RETRY_INTERVAL);
                if recently_failed && self.inner.fetching.try_lock().is_ok() {
                    return Err(self.inner.unavailable());
                }
                self.inner.fetch_once(Instant::now()).await
            }
        }
    }

    async fn refresh(&self, stale: &Arc<KeySet>) -> Option<Arc<KeySet>> {
        let asked = Instant::now();
        {
            let state = self.inner.read();
            if let Some(current) = &state.keys
                && !Arc::ptr_eq(current, stale)
                && **current != **stale
            {
                return Some(Arc::clone(current));
            }
            if state
                .attempted_at
                .is_some_and(|at| at.elapsed() < self.inner.min_refetch_interval)
            {
                return None;
            }
        }
        let fresh = self.inner.fetch_once(asked).await.ok()?;
        (*fresh != **stale).then_some(fresh)
    }
}

impl WellKnownKeys {
    fn refresh_in_background(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.fetching.try_lock().is_err() {
            return; // A fetch is under way already.
        }
        let inner = Arc::clone(&self.inner);
        handle.spawn(async move {
            let _ = inner.fetch_once(Instant::now()).await;
        });
    }
}

impl Inner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn unavailable(&self) -> KeyUnavailable {
        let state = self.read();
        KeyUnavailable::new(match &state.last_error {
            Some(error) => format!("fetching {} failed: {error}", self.url),
            None => format!("{} has not been fetched yet", self.url),
        })
    }

    /// Fetches unless a fetch finished after `asked` (then its result is the answer): the
    /// single flight.
    async fn fetch_once(&self, asked: Instant) -> Result<Arc<KeySet>, KeyUnavailable> {
        let _flight = self.fetching.lock().await;
        {
            let state = self.read();
            if state.attempted_at.is_some_and(|at| at >= asked) {
                return state.keys.clone().ok_or_else(|| {
                    drop(state);
                    self.unavailable()
                });
            }
        }
        let result = self.fetch().await;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.attempted_at = Some(Instant::now());
        match result {
            Ok(keys) => {
                metrics::outcome(metrics::KEY_FETCHES, "ok");
                let keys = match &state.keys {
                    // Keep the same Arc when nothing changed, so callers can compare cheaply.
                    Some(current) if **current == keys => Arc::clone(current),
                    _ => {
                        tracing::info!(target: "countersign", url = %self.url, "fetched the Contentstack public key");
                        Arc::new(keys)
                    }
                };
                state.keys = Some(Arc::clone(&keys));
                state.fetched_at = Some(Instant::now());
                state.last_error = None;
                Ok(keys)
            }
            Err(error) => {
                tracing::warn!(
                    target: "countersign",
                    url = %self.url,
                    %error,
                    serving_cached_key = state.keys.is_some(),
                    "fetching the Contentstack public key failed"
                );
                state.last_error = Some(error);
                metrics::outcome(metrics::KEY_FETCHES, "failed");
                match &state.keys {
                    Some(keys) => {
                        metrics::outcome(metrics::KEY_FETCHES, "stale_served");
                        Ok(Arc::clone(keys))
                    }
                    None => {
                        drop(state);
                        Err(self.unavailable())
                    }
                }
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| describe(&e))?;
        if !response.status().is_success() {
            return Err(format!("the endpoint answered {}", response.status()));
        }
        let document = read_limited(response, MAX_DOCUMENT_LEN, "the key document").await?;
        let text = std::str::from_utf8(&document)
            .map_err(|_| "the key document is not UTF-8".to_owned())?;
        KeySet::parse(text).map_err(|e| e.to_string())
    }
}
