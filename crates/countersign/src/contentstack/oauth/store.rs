//! Where an installation's tokens are kept: [`TokenStore`], and [`MemoryTokenStore`] for one
//! instance.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use countersign_core::contentstack::oauth::{AccessToken, RefreshToken};
pub use countersign_core::replay::{StoreError, StoreErrorKind};

/// An installation of the app: its organization and, for a stack app, its stack. Each has its
/// own tokens, and no call made for one ever carries another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Installation {
    /// The organization (`organization_uid`).
    pub organization_uid: String,
    /// The stack (`stack_api_key`), for a stack app.
    pub stack_api_key: Option<String>,
}

/// A UI location's session acts for its own installation: its organization and stack, as the
/// app-token that opened it named them.
impl From<&crate::contentstack::session::AppSession> for Installation {
    fn from(session: &crate::contentstack::session::AppSession) -> Self {
        Self {
            organization_uid: session.organization_uid().to_owned(),
            stack_api_key: session.stack_api_key().map(str::to_owned),
        }
    }
}

impl Installation {
    /// The installation an `app_installation` event (an uninstall, say) names: the
    /// organization its data names (`data.app_installation.organization_uid`) and, for a
    /// stack's installation, the delivery's verified stack. `None` when the data names no
    /// organization, or a target stack other than the delivery's.
    #[must_use]
    pub fn of_event(webhook: &crate::extract::ContentstackWebhook) -> Option<Self> {
        let installation = webhook.data.get("app_installation")?;
        let target = &installation["target"];
        let stack_api_key = match target["type"].as_str() {
            Some("stack") | None => {
                let stack = webhook.api_key()?;
                if target["uid"].is_string() && target["uid"] != stack {
                    return None;
                }
                Some(stack.to_owned())
            }
            Some(_) => None,
        };
        Some(Self {
            organization_uid: installation["organization_uid"].as_str()?.to_owned(),
            stack_api_key,
        })
    }
}

/// An installation's tokens as they are kept. `Debug` shows neither token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTokens {
    /// The access token.
    pub access_token: AccessToken,
    /// The refresh token (the latest: a refresh that rotates it replaces it here before the
    /// new access token is handed out).
    pub refresh_token: Option<RefreshToken>,
    /// When the access token expires.
    pub expires_at: SystemTime,
    /// How long it lived when issued (its `expires_in`): the refresh margin is the lesser of
    /// 60 s and half of it.
    pub lifetime: Duration,
    /// The installation's region: a `location` (`NA`, `EU`, ...) or a custom base URL.
    pub region: String,
    /// When the installation authorized the app, by Contentstack's clock: the token
    /// endpoint's `Date` at the code's exchange, to the second (this host's clock when it sent
    /// none), kept through refreshes. An uninstall event triggered before it
    /// is an earlier installation's (a retried uninstall after a new install), whatever this
    /// host's clock says.
    pub authorized_at: SystemTime,
}

/// Where tokens are kept, shared by every instance of the app: the tokens of each
/// installation, and its refresh lock, so that one instance at a time refreshes (a used refresh
/// token may stop working). [`MemoryTokenStore`] serves one instance. A fleet implements the
/// six methods over its shared database, keeping the tokens sealed (encrypted) at rest:
/// `replace` is a compare-and-set on the stored refresh token (compare a keyed fingerprint,
/// not the token), and `lock` sets an owner and an expiry unless another owner's has not
/// passed (one `UPDATE ... WHERE` in SQL).
pub trait TokenStore: Send + Sync + 'static {
    /// The installation's tokens, if any.
    fn load(
        &self,
        installation: &Installation,
    ) -> impl Future<Output = Result<Option<StoredTokens>, StoreError>> + Send;
    /// Keeps `tokens` as the installation's, replacing what was there.
    fn save(
        &self,
        installation: &Installation,
        tokens: &StoredTokens,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Forgets the installation's tokens (it was uninstalled).
    fn forget(
        &self,
        installation: &Installation,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Replaces the installation's tokens with `tokens` (or forgets them, for `None`) only if
    /// the stored refresh token is still `previous`: `true` when replaced. A refresh writes its
    /// outcome this way, so that one whose lock lapsed never undoes another's refresh, an
    /// uninstall or a new authorization.
    fn replace(
        &self,
        installation: &Installation,
        previous: &RefreshToken,
        tokens: Option<&StoredTokens>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Takes the installation's refresh lock for `owner` until `lease` has passed, unless
    /// another owner holds it: `true` when taken (or already `owner`'s).
    fn lock(
        &self,
        installation: &Installation,
        owner: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Gives the lock back, if `owner` holds it.
    fn unlock(
        &self,
        installation: &Installation,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Tokens in this process's memory: for one instance, and for tests.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    entries: Mutex<HashMap<Installation, Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    tokens: Option<StoredTokens>,
    lock: Option<(String, Instant)>,
}

impl MemoryTokenStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, installation: &Installation, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(installation.clone()).or_default();
        let result = f(entry);
        if entry.tokens.is_none() && entry.lock.is_none() {
            entries.remove(installation);
        }
        result
    }
}

impl TokenStore for MemoryTokenStore {
    fn load(
        &self,
        installation: &Installation,
    ) -> impl Future<Output = Result<Option<StoredTokens>, StoreError>> + Send {
        std::future::ready(Ok(self.with(installation, |entry| entry.tokens.clone())))
    }

    fn save(
        &self,
        installation: &Installation,
        tokens: &StoredTokens,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.with(installation, |entry| entry.tokens = Some(tokens.clone()));
        std::future::ready(Ok(()))
    }

    fn forget(
        &self,
        installation: &Installation,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.with(installation, |entry| entry.tokens = None);
        std::future::ready(Ok(()))
    }

    fn replace(
        &self,
        installation: &Installation,
        previous: &RefreshToken,
        tokens: Option<&StoredTokens>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let replaced = self.with(installation, |entry| {
            let current = entry.tokens.as_ref().and_then(|t| t.refresh_token.as_ref());
            if current == Some(previous) {
                entry.tokens = tokens.cloned();
                true
            } else {
                false
            }
        });
        std::future::ready(Ok(replaced))
    }

    fn lock(
        &self,
        installation: &Installation,
        owner: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let now = Instant::now();
        let taken = self.with(installation, |entry| match &entry.lock {
            Some((holder, until)) if holder != owner && *until > now => false,
            _ => {
                entry.lock = Some((owner.to_owned(), now + lease));
                true
            }
        });
        std::future::ready(Ok(taken))
    }

    fn unlock(
        &self,
        installation: &Installation,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.with(installation, |entry| {
            if entry
                .lock
                .as_ref()
                .is_some_and(|(holder, _)| holder == owner)
            {
                entry.lock = None;
            }
        });
        std::future::ready(Ok(()))
    }
}

/// A shared store is a store: several clients can hold one through an `Arc`.
impl<S: TokenStore> TokenStore for std::sync::Arc<S> {
    fn load(
        &self,
        installation: &Installation,
    ) -> impl Future<Output = Result<Option<StoredTokens>, StoreError>> + Send {
        S::load(self, installation)
    }

    fn save(
        &self,
        installation: &Installation,
        tokens: &StoredTokens,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::save(self, installation, tokens)
    }

    fn forget(
        &self,
        installation: &Installation,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::forget(self, installation)
    }

    fn replace(
        &self,
        installation: &Installation,
        previous: &RefreshToken,
        tokens: Option<&StoredTokens>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        S::replace(self, installation, previous, tokens)
    }

    fn lock(
        &self,
        installation: &Installation,
        owner: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        S::lock(self, installation, owner, lease)
    }

    fn unlock(
        &self,
        installation: &Installation,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::unlock(self, installation, owner)
    }
}
