//! Where deliveries are remembered: the [`ReplayStore`] trait, what it answers, and how it
//! fails.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::ReplayKey;

/// What the store says about a delivery it is asked to claim. Exhaustive: the replay guard
/// answers each case, so a new one would be a breaking change anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen, or already the caller's: now claimed by the caller, for the lease.
    Claimed,
    /// Seen and handled.
    Done,
    /// Seen and being handled now, under another owner's live lease.
    InFlight,
    /// The store is full of live entries and refuses new ones.
    Full,
    /// The delivery's tenant ([`ReplayKey::partition`]) holds its whole share of the store,
    /// which refuses it new entries while it serves the other tenants.
    TenantFull,
}

/// Why a store failed: what a caller decides on (retry, fail open, alert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store cannot be reached (connection refused, reset, closed).
    Unavailable,
    /// The store did not answer in time; the operation may or may not have been applied.
    Timeout,
    /// The store answered something this crate does not understand (a script missing, a
    /// wrong type under the key).
    Protocol,
    /// The store has no room for the entry now (it is full of live ones).
    Full,
}

impl StoreErrorKind {
    /// Why, from the [catalogue](crate::reason): the code, the HTTP status, the title and
    /// whether the sender should come back.
    #[must_use]
    pub const fn reason(self) -> &'static crate::reason::Reason {
        match self {
            Self::Unavailable => &crate::reason::STORE_UNAVAILABLE,
            Self::Timeout => &crate::reason::STORE_TIMEOUT,
            Self::Protocol => &crate::reason::STORE_PROTOCOL,
            Self::Full => &crate::reason::STORE_FULL,
        }
    }

    /// A stable snake_case code for this kind, for HTTP answers, logs and scripts.
    #[must_use]
    pub const fn code(self) -> &'static str {
        self.reason().code
    }
}

/// A store's failure (Redis unreachable, ...): a [`kind`](Self::kind) and a message that never
/// holds a secret (no URL, no password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

impl StoreError {
    /// A failure of this kind.
    #[must_use]
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Why the store failed.
    #[must_use]
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The detail, for logs.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the replay store failed ({}): {}",
            self.kind.code(),
            self.message
        )
    }
}

impl std::error::Error for StoreError {}

/// Who claimed a delivery: random per request, so that one instance never completes or
/// releases another's claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner(String);

impl Owner {
    /// A fresh owner: 32 random hex digits. Should the random source fail, a process-wide
    /// counter still keeps owners distinct within this process (and the pid across processes
    /// on one host).
    #[must_use]
    pub fn random() -> Self {
        Self(crate::crypto::random_hex(16).unwrap_or_else(|_| {
            use std::sync::atomic::{AtomicU64, Ordering};
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            format!(
                "{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            )
        }))
    }

    /// An owner with a given token (tests, custom guards).
    #[must_use]
    pub fn from_token(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The owner's token.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where deliveries are remembered: new, in flight under an owner's lease, then done.
///
/// Every operation but `claim` is a compare-and-set on the owner: one instance never renews,
/// completes or releases another's claim. The trait needs no runtime: [`MemoryStore`](super::MemoryStore)
/// answers at once, and the `countersign` crate's `RedisStore` on Tokio.
pub trait ReplayStore: Send + Sync + 'static {
    /// Claims `key` for `owner` for `lease` unless another owner holds it or it is done.
    /// Idempotent for one owner: claiming again what `owner` holds extends the lease and
    /// answers [`Claim::Claimed`], so that a claim whose answer was lost can be asked again.
    fn claim(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;
    /// Extends `owner`'s lease on `key` to `lease` from now. `false`: the claim is no longer
    /// `owner`'s (it lapsed, and another owner may hold it).
    fn renew(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Marks `key` done for `ttl`, when it is `owner`'s claim or nobody's (a lapsed lease); a
    /// claim another owner holds now is left alone.
    fn complete(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Forgets `owner`'s claim of `key`, so that a retry runs.
    fn release(
        &self,
        key: &ReplayKey,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// What to do when the store fails: pass the request on unprotected (`true`) or answer
    /// 503 (`false`, the default).
    fn fail_open(&self) -> bool {
        false
    }
}

/// A shared store is a store: several guards (routes, layers) can hold one through an `Arc`.
impl<St: ReplayStore> ReplayStore for Arc<St> {
    fn claim(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        St::claim(self, key, owner, lease)
    }

    fn renew(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        St::renew(self, key, owner, lease)
    }

    fn complete(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        St::complete(self, key, owner, ttl)
    }

    fn release(
        &self,
        key: &ReplayKey,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        St::release(self, key, owner)
    }

    fn fail_open(&self) -> bool {
        St::fail_open(self)
    }
}

/// Any [`ReplayStore`] behind one type: pick the store at run time (memory for one instance,
/// Redis for a fleet) without a generic parameter or two copies of your routes. Cheap to
/// clone; clones share the store.
///
/// ```
/// use countersign_core::replay::{BoxReplayStore, MemoryStore};
///
/// let store = BoxReplayStore::new(MemoryStore::default());
/// # let _ = store.clone();
/// ```
#[derive(Clone)]
pub struct BoxReplayStore(Arc<dyn ErasedStore>);

impl BoxReplayStore {
    /// `store`, boxed.
    pub fn new(store: impl ReplayStore) -> Self {
        Self(Arc::new(store))
    }
}

impl fmt::Debug for BoxReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxReplayStore")
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// [`ReplayStore`] with boxed futures that own what they need, so that it can be a trait
/// object.
trait ErasedStore: Send + Sync + 'static {
    fn claim(
        self: Arc<Self>,
        key: ReplayKey,
        owner: Owner,
        lease: Duration,
    ) -> BoxFuture<Result<Claim, StoreError>>;
    fn renew(
        self: Arc<Self>,
        key: ReplayKey,
        owner: Owner,
        lease: Duration,
    ) -> BoxFuture<Result<bool, StoreError>>;
    fn complete(
        self: Arc<Self>,
        key: ReplayKey,
        owner: Owner,
        ttl: Duration,
    ) -> BoxFuture<Result<(), StoreError>>;
    fn release(self: Arc<Self>, key: ReplayKey, owner: Owner) -> BoxFuture<Result<(), StoreError>>;
    fn fail_open(&self) -> bool;
}

impl<St: ReplayStore> ErasedStore for St {
    fn claim(
        self: Arc<Self>,
        key: ReplayKey,
        owner: Owner,
        lease: Duration,
    ) -> BoxFuture<Result<Claim, StoreError>> {
        Box::pin(async move { ReplayStore::claim(&*self, &key, &owner, lease).await })
    }

    fn renew(
        self: Arc<Self>,
        key: ReplayKey,
        owner: Owner,
        lease: Duration,
    ) -> BoxFuture<Result<bool, StoreError>> {
        Box::pin(async move { ReplayStore::renew(&*self, &key, &owner, lease).await })
    }

    fn complete(
        self: Arc<Self>,
        key: ReplayKey,
        owner: Owner,
        ttl: Duration,
    ) -> BoxFuture<Result<(), StoreError>> {
        Box::pin(async move { ReplayStore::complete(&*self, &key, &owner, ttl).await })
    }

    fn release(self: Arc<Self>, key: ReplayKey, owner: Owner) -> BoxFuture<Result<(), StoreError>> {
        Box::pin(async move { ReplayStore::release(&*self, &key, &owner).await })
    }

    fn fail_open(&self) -> bool {
        ReplayStore::fail_open(self)
    }
}

impl ReplayStore for BoxReplayStore {
    fn claim(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        Arc::clone(&self.0).claim(*key, owner.clone(), lease)
    }

    fn renew(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        Arc::clone(&self.0).renew(*key, owner.clone(), lease)
    }

    fn complete(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        Arc::clone(&self.0).complete(*key, owner.clone(), ttl)
    }

    fn release(
        &self,
        key: &ReplayKey,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        Arc::clone(&self.0).release(*key, owner.clone())
    }

    fn fail_open(&self) -> bool {
        self.0.fail_open()
    }
}
