//! A durable inbox (feature `inbox`): a verified delivery is committed, then acknowledged at
//! once, and the application's handler runs it later from the inbox until it succeeds once.
//!
//! A provider stops sending when its deliveries fail: Contentstack disables a webhook after 10
//! failures in a row, and waits 30 s per attempt. A handler that calls an API, or a database
//! that restarts, turns into those failures. With an inbox, the request path only verifies
//! and commits (a few milliseconds), and the handler's own slowness or failures stay here:
//!
//! - [`Inbox::acknowledge`] is the route's endpoint, behind a verification layer: it commits
//!   the verified delivery (body, provider, tenant, the signed facts) keyed by its delivery id,
//!   then answers 200 `{"status":"accepted"}`. A delivery id already there is answered 200
//!   `{"status":"duplicate"}`: the inbox is also the replay store, for as long as the
//!   signature stays acceptable plus a margin.
//! - [`Inbox::work`] starts workers that hand each delivery to your handler. A worker holds a
//!   delivery on a lease, renewed while the handler runs: a worker that dies lets its lease
//!   lapse, and another takes the delivery over. A handler that fails is tried again after a
//!   growing wait ([`Backoff`]), and so is one that runs longer than the attempt timeout (5 min);
//!   after the last attempt the delivery is a dead letter, listed by [`Inbox::dead_letters`]
//!   and tried again by [`Inbox::retry`] (per tenant), kept for 7 days.
//! - With a `Spool`, an instance keeps accepting while the inbox's database is down: it
//!   writes each verified delivery to a bounded directory of its own (flushed to disk before
//!   the answer) and moves them into the inbox, idempotently, once the database is back.
//! - Tenants are kept apart: a worker takes each tenant's oldest due delivery before a second of
//!   any, no tenant runs more than [`DEFAULT_TENANT_CONCURRENCY`] deliveries at once across the
//!   fleet (so one whose handlers hang holds two workers, not all), and a tenant with
//!   [`DEFAULT_TENANT_LIMIT`] deliveries waiting has its next ones refused with 503
//!   `inbox_tenant_full`, so that none fills the inbox.
//!
//! The handler is called at least once per delivery, and again only after a failure, a
//! timeout or a lost lease ([`Inbox::work`] says when): make its effects idempotent by
//! [`InboxDelivery::id`].
//!
//! ```no_run
//! use axum::{Router, routing::post_service};
//! use countersign::ContentstackWebhookLayer;
//! use countersign::contentstack::{StaticKeys, WebhookVerifier};
//! use countersign::inbox::{Inbox, InboxDelivery, InboxStore, Workers};
//!
//! // `store`: `SqliteInbox::open("data/inbox.sqlite3")?`, or `PostgresInbox::new(pool)`.
//! // Serve the router while you hold the workers: dropping them stops them.
//! fn app(store: impl InboxStore, keys: StaticKeys) -> (Router, Workers) {
//!     let inbox = Inbox::new(store);
//!     // The handler runs here, not on the request path.
//!     let workers = inbox.work(4, |delivery: InboxDelivery| async move {
//!         let webhook: serde_json::Value = delivery.json()?;
//!         println!("{} {}", delivery.id, webhook["event"]);
//!         Ok(())
//!     });
//!     let router = Router::new().route(
//!         "/webhooks/contentstack",
//!         post_service(inbox.acknowledge())
//!             .layer(ContentstackWebhookLayer::new(WebhookVerifier::new(), keys)),
//!     );
//!     (router, workers)
//! }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::de::DeserializeOwned;

pub use countersign_core::inbox::{Backoff, remember_for};
pub use countersign_core::replay::{StoreError, StoreErrorKind};

mod acknowledge;
#[cfg(feature = "inbox-postgres")]
mod postgres;
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
mod spool;
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
mod sql;
#[cfg(feature = "inbox-sqlite")]
mod sqlite;
mod worker;

pub use acknowledge::Acknowledge;
#[cfg(feature = "inbox-postgres")]
pub use postgres::{PostgresInbox, TransactionFuture};
#[cfg(feature = "inbox-sqlite")]
pub use rusqlite;
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
pub use spool::{DEFAULT_SPOOL_BYTES, DEFAULT_SPOOL_ENTRIES, Spool};
#[cfg(feature = "inbox-sqlite")]
pub use sqlite::SqliteInbox;
#[cfg(feature = "inbox-postgres")]
pub use tokio_postgres;
pub use worker::Workers;

/// How many deliveries of one tenant may wait in the inbox (pending or running) before its
/// next ones are refused with 503 `inbox_tenant_full`.
pub const DEFAULT_TENANT_LIMIT: u64 = 10_000;
/// How long a worker holds a delivery before another may take it over, unless renewed (every
/// third of it while the handler runs).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// How long a handled delivery is remembered beyond its signature's acceptance window.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(60);
/// How long a delivery's id is remembered at the least, once handled (as a tombstone: the id,
/// without its body), whatever its signature's window: longer than the providers' published
/// retries (Contentful: 3 attempts 30 s apart; Contentstack: 5 to 625 s, about 16 minutes in
/// all), so that a retry signed afresh is still a duplicate. A Contentful webhook with a
/// custom retry policy (up to 24 h) needs [`Inbox::with_retry_horizon`] set past it.
pub const DEFAULT_RETRY_HORIZON: Duration = Duration::from_secs(3600);
/// How often an idle worker looks for deliveries another instance committed.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);
/// How many deliveries of one tenant run at once, across every instance: a tenant whose
/// handlers are slow or hang holds no more workers than this.
pub const DEFAULT_TENANT_CONCURRENCY: u64 = 2;
/// How long one attempt may run before it counts as failed.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a dead letter is kept (then forgotten, body and all).
pub const DEFAULT_DEAD_LETTER_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a dead letter says when it is a spooled delivery that waited in the spool past half
/// the time its id is remembered (the retry horizon, [`Inbox::with_retry_horizon`], or its
/// signature's window and the margin if longer): it was set aside, not run, since another
/// instance may have committed and handled it already and forgotten its id since. An
/// operator checks the handler's own records before retrying it.
pub const MAYBE_HANDLED: &str = "set aside unrun: it waited in an instance's spool past half the time its id is remembered, so it may have been handled already; retry it only if its effects are absent";

/// What a handler's error is.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which provider sent a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// A Contentstack webhook.
    Contentstack,
    /// A Contentful webhook, app event or app action.
    Contentful,
}

impl Provider {
    /// `contentstack` or `contentful`, as stored.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Contentstack => "contentstack",
            Self::Contentful => "contentful",
        }
    }

    /// The provider named `name`, as stored.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "contentstack" => Some(Self::Contentstack),
            "contentful" => Some(Self::Contentful),
            _ => None,
        }
    }
}

/// A verified delivery as the inbox keeps it and hands it to the handler. `Debug` shows its
/// size, not its body.
#[derive(Clone, PartialEq, Eq)]
pub struct InboxDelivery {
    /// The delivery id: the same for every retry and replay of the delivery (the hex of its
    /// [`ReplayKey`](countersign_core::replay::ReplayKey)). Make the handler's writes
    /// idempotent by it.
    pub id: String,
    /// Who sent it.
    pub provider: Provider,
    /// Its tenant: the stack (`api_key`) of a Contentstack webhook, the space of a Contentful
    /// request.
    pub tenant: Option<String>,
    /// The verified body.
    pub body: Bytes,
    /// Contentful: the signed headers (topic, space, environment, ...), credentials left out.
    pub signed_headers: Vec<(String, String)>,
    /// When it was committed.
    pub received_at: SystemTime,
    /// Which attempt this is: 1 for the first.
    pub attempt: u32,
}

impl InboxDelivery {
    /// The body, deserialized.
    ///
    /// # Errors
    /// When the body is not a `T` in JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// A signed header's value (Contentful: `x-contentful-topic`, ...), by its lower-case name.
    #[must_use]
    pub fn signed_header(&self, name: &str) -> Option<&str> {
        self.signed_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

impl fmt::Debug for InboxDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxDelivery")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("tenant", &self.tenant)
            .field("body_len", &self.body.len())
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// A handler's error that makes its delivery a dead letter at once, with no further attempt:
/// for a delivery that no retry can help (its body is not an event the app knows, say).
///
/// ```
/// use countersign::inbox::{GiveUp, InboxDelivery};
///
/// async fn handle(delivery: InboxDelivery) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     let Ok(event) = delivery.json::<serde_json::Value>() else {
///         return Err(GiveUp::new("the body is not JSON").into());
///     };
///     println!("{}", event["event"]);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveUp {
    reason: String,
}

impl GiveUp {
    /// Gives up on the delivery, for `reason` (kept with the dead letter).
    #[must_use]
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for GiveUp {}

/// What committing a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// It is in the inbox now, due at once.
    New,
    /// It was there already (a retry or a replay): nothing changed.
    Duplicate,
    /// Its tenant has its limit of deliveries waiting: not committed.
    TenantFull,
}

/// What trying a dead letter again did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// It is due again, its attempts counted afresh.
    Due,
    /// There is no such dead letter (of this tenant).
    NotFound,
    /// Its tenant has its limit of deliveries waiting: try again later.
    TenantFull,
}

/// A delivery whose last attempt failed: kept until it is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The delivery id.
    pub id: String,
    /// Who sent it.
    pub provider: Provider,
    /// Its tenant.
    pub tenant: Option<String>,
    /// How many attempts it had.
    pub attempts: u32,
    /// What the last attempt's handler said.
    pub last_error: Option<String>,
    /// When it was committed.
    pub received_at: SystemTime,
}

/// How full the inbox is: what the metrics and alerts read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxStats {
    /// Deliveries waiting for a worker (or for their next attempt).
    pub pending: u64,
    /// Deliveries a worker holds now.
    pub leased: u64,
    /// Dead letters.
    pub dead: u64,
    /// When the oldest delivery not yet handled (pending or leased) was committed.
    pub oldest_unhandled: Option<SystemTime>,
}

/// What a worker asks of [`InboxStore::claim`].
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// The workers' name: each delivery's lease is `{owner}:{attempt}`, so that an attempt
    /// whose lease lapsed never acts on a later attempt's.
    pub owner: &'a str,
    /// Now, by the caller's clock.
    pub now: SystemTime,
    /// When the leases taken end unless renewed.
    pub lease_until: SystemTime,
    /// The most deliveries to take.
    pub limit: usize,
    /// The most deliveries of one tenant on live leases (across every instance).
    pub tenant_concurrency: u64,
    /// A delivery whose lease lapsed on its last attempt (its worker died) becomes a dead
    /// letter, kept until `dead_until`, rather than being taken again.
    pub max_attempts: u32,
    /// Until when a dead letter is kept.
    pub dead_until: SystemTime,
    /// Where this claim starts the rotation of tenants with equal turns (any number: a claim's
    /// own, so that no tenant is always first).
    pub rotation: u32,
}

/// Where an inbox keeps its deliveries: `SqliteInbox` for one instance (feature
/// `inbox-sqlite`), `PostgresInbox` for a fleet (feature `inbox-postgres`). Every time is the
/// caller's. A `lease` is the `{owner}:{attempt}` a claim gave the delivery.
pub trait InboxStore: Send + Sync + 'static {
    /// Commits `delivery` (due at once, remembered until `expires_at` once handled) unless its
    /// id is there, or its tenant has `tenant_limit` deliveries pending or leased (`u64::MAX`:
    /// no limit, and nothing to count). The commit is durable when this returns.
    fn commit(
        &self,
        delivery: &InboxDelivery,
        expires_at: SystemTime,
        tenant_limit: u64,
    ) -> impl Future<Output = Result<Commit, StoreError>> + Send;
    /// Commits `delivery` as a dead letter kept until `dead_until`, with `note` as its last
    /// error, unless its id is there: a spooled delivery that waited too long to be told apart
    /// from one handled and forgotten already. [`Commit::New`] when set aside,
    /// [`Commit::Duplicate`] when its id was there.
    fn set_aside(
        &self,
        delivery: &InboxDelivery,
        note: &str,
        dead_until: SystemTime,
    ) -> impl Future<Output = Result<Commit, StoreError>> + Send;
    /// Takes up to `limit` deliveries that are due (pending, or leased on a lease that has
    /// passed), each tenant's oldest first and none of a tenant with `tenant_concurrency` on
    /// live leases, and counts an attempt for each.
    fn claim(
        &self,
        request: ClaimRequest<'_>,
    ) -> impl Future<Output = Result<Vec<InboxDelivery>, StoreError>> + Send;
    /// Extends `lease` on `id` to `lease_until`: `false` when it is not `id`'s lease any more.
    fn renew(
        &self,
        id: &str,
        lease: &str,
        lease_until: SystemTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Marks `id` handled, if `lease` is still its lease.
    fn complete(
        &self,
        id: &str,
        lease: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records that the attempt on `lease` at `id` failed with `error`: due again at
    /// `retry_at`, or for `None` a dead letter kept until `dead_until`.
    fn fail(
        &self,
        id: &str,
        lease: &str,
        error: &str,
        retry_at: Option<SystemTime>,
        dead_until: SystemTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The dead letters of `tenant` (every tenant's for `None`), newest first, at most `limit`.
    fn dead_letters(
        &self,
        tenant: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send;
    /// Makes the dead letter `id` of `tenant` (any tenant's for `None`) due again at `now`,
    /// with its attempts counted afresh, unless its tenant has `tenant_limit` deliveries
    /// pending or leased.
    fn retry(
        &self,
        tenant: Option<&str>,
        id: &str,
        now: SystemTime,
        tenant_limit: u64,
    ) -> impl Future<Output = Result<Retried, StoreError>> + Send;
    /// The tenants (`None`: deliveries of no tenant) with at least `threshold` deliveries
    /// pending or leased: those whose commits count what they have waiting.
    fn crowded(
        &self,
        threshold: u64,
    ) -> impl Future<Output = Result<Vec<Option<String>>, StoreError>> + Send;
    /// Forgets the handled deliveries and the dead letters kept until before `now`: how many.
    fn purge(&self, now: SystemTime) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// How full the inbox is.
    fn stats(&self) -> impl Future<Output = Result<InboxStats, StoreError>> + Send;
}

/// A durable inbox over a store. See the [module docs](self). Cheap to clone; clones share
/// everything.
pub struct Inbox<St> {
    inner: Arc<Inner<St>>,
}

impl<St> Clone for Inbox<St> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<St> {
    store: St,
    settings: Settings,
    /// Where deliveries wait while the store is down.
    #[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
    spool: Option<Spool>,
    /// Wakes this instance's idle workers when a delivery is committed here.
    committed: tokio::sync::Notify,
    /// The tenants near their limit, as last read: only their commits count.
    crowded: std::sync::Mutex<Crowded>,
}

/// The tenants with half their limit or more waiting, read at most every [`CROWDED_EVERY`].
#[derive(Default)]
struct Crowded {
    tenants: std::collections::HashSet<Option<String>>,
    /// Whether they were ever read (if not, every commit counts).
    known: bool,
    /// When a reading last began: one a second at most, even while they fail.
    tried_at: Option<std::time::Instant>,
    reading: bool,
}

/// How often the tenants near their limit are read again.
const CROWDED_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Settings {
    backoff: Backoff,
    lease: Duration,
    margin: Duration,
    retry_horizon: Duration,
    tenant_limit: u64,
    tenant_concurrency: u64,
    attempt_timeout: Duration,
    dead_letter_ttl: Duration,
    poll: Duration,
}

impl<St: fmt::Debug> fmt::Debug for Inbox<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("store", &self.inner.store)
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl<St: InboxStore> Inbox<St> {
    /// An inbox over `store`, with the defaults: [`Backoff::default`], [`DEFAULT_LEASE`],
    /// [`DEFAULT_MARGIN`], [`DEFAULT_RETRY_HORIZON`], [`DEFAULT_TENANT_LIMIT`], [`DEFAULT_TENANT_CONCURRENCY`],
    /// [`DEFAULT_ATTEMPT_TIMEOUT`], [`DEFAULT_DEAD_LETTER_TTL`] and [`DEFAULT_POLL`]. Set
    /// them with the `with_*` methods before cloning the inbox (they panic after).
    pub fn new(store: St) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                settings: Settings {
                    backoff: Backoff::default(),
                    lease: DEFAULT_LEASE,
                    margin: DEFAULT_MARGIN,
                    retry_horizon: DEFAULT_RETRY_HORIZON,
                    tenant_limit: DEFAULT_TENANT_LIMIT,
                    tenant_concurrency: DEFAULT_TENANT_CONCURRENCY,
                    attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
                    dead_letter_ttl: DEFAULT_DEAD_LETTER_TTL,
                    poll: DEFAULT_POLL,
                },
                #[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
                spool: None,
                committed: tokio::sync::Notify::new(),
                crowded: std::sync::Mutex::default(),
            }),
        }
    }

    fn reconfigure(self, change: impl FnOnce(&mut Settings)) -> Self {
        self.rebuild(|inner| change(&mut inner.settings))
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner<St>)) -> Self {
        Self {
            inner: crate::configure(self.inner, "Inbox", change),
        }
    }

    /// When a failed delivery is tried again, and after how many attempts it is a dead letter.
    #[must_use]
    pub fn with_backoff(self, backoff: Backoff) -> Self {
        self.reconfigure(|settings| settings.backoff = backoff)
    }

    /// How long a worker holds a delivery unless it renews the lease (at least 300 ms).
    #[must_use]
    pub fn with_lease(self, lease: Duration) -> Self {
        let lease = lease.clamp(Duration::from_millis(300), countersign_core::MAX_WINDOW);
        self.reconfigure(|settings| settings.lease = lease)
    }

    /// How long a handled delivery is remembered beyond its signature's acceptance window.
    #[must_use]
    pub fn with_margin(self, margin: Duration) -> Self {
        self.reconfigure(|settings| settings.margin = margin.min(countersign_core::MAX_WINDOW))
    }

    /// How long a handled delivery's id is remembered at the least ([`DEFAULT_RETRY_HORIZON`]):
    /// longer than the provider goes on retrying a delivery (a Contentful webhook's custom
    /// retry policy, say), and longer than a spooled delivery may wait for the database. A
    /// spooled delivery still waiting after half of it (or of its signature's window and the
    /// margin, if longer) is not run: it may have been committed
    /// and handled by another instance already, and forgotten since, so it is set aside as a
    /// dead letter that says so (see [`Spool`]). Each id costs a row without its body.
    #[must_use]
    pub fn with_retry_horizon(self, horizon: Duration) -> Self {
        let horizon = horizon.min(countersign_core::MAX_WINDOW);
        self.reconfigure(|settings| settings.retry_horizon = horizon)
    }

    /// How many deliveries of one tenant may wait (at least 1).
    #[must_use]
    pub fn with_tenant_limit(self, limit: u64) -> Self {
        self.reconfigure(|settings| settings.tenant_limit = limit.max(1))
    }

    /// How many deliveries of one tenant run at once across every instance (at least 1; a
    /// single-tenant app raises it to its workers' number).
    #[must_use]
    pub fn with_tenant_concurrency(self, concurrency: u64) -> Self {
        self.reconfigure(|settings| settings.tenant_concurrency = concurrency.max(1))
    }

    /// How long one attempt may run before it counts as failed (and is tried again).
    #[must_use]
    pub fn with_attempt_timeout(self, timeout: Duration) -> Self {
        let timeout = timeout.min(countersign_core::MAX_WINDOW);
        self.reconfigure(|settings| settings.attempt_timeout = timeout)
    }

    /// How long a dead letter is kept before it is forgotten.
    #[must_use]
    pub fn with_dead_letter_ttl(self, ttl: Duration) -> Self {
        let ttl = ttl.min(countersign_core::MAX_WINDOW);
        self.reconfigure(|settings| settings.dead_letter_ttl = ttl)
    }

    /// How often an idle worker looks for deliveries other instances committed.
    #[must_use]
    pub fn with_poll_interval(self, poll: Duration) -> Self {
        self.reconfigure(|settings| settings.poll = poll.max(Duration::from_millis(10)))
    }

    /// Keeps verified deliveries in `spool`, this instance's own directory, while the store
    /// cannot be reached, and acknowledges them; this instance's workers move them into the
    /// inbox once it is back. Only a full spool answers 503.
    #[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
    #[must_use]
    pub fn with_spool(self, spool: Spool) -> Self {
        self.rebuild(|inner| inner.spool = Some(spool))
    }

    /// The route's endpoint, behind a verification layer: commits each verified delivery and
    /// answers it (see the [module docs](self)).
    #[must_use]
    pub fn acknowledge(&self) -> Acknowledge<St> {
        Acknowledge::new(self.clone())
    }

    /// Starts `concurrency` workers (at least 1) on the current Tokio runtime that hand each
    /// delivery to `handler`; they stop when the returned [`Workers`] is dropped or stopped:
    /// hold it while the server runs.
    ///
    /// The handler is called at least once per delivery, in no particular order. It may be
    /// called again after it failed, timed out or was cancelled (its workers stopped, or its
    /// lease lost while the store was unreachable: then another attempt may run beside it).
    /// Write by [`InboxDelivery::id`], in a transaction, so that a second run changes nothing.
    #[must_use = "the workers stop when this is dropped"]
    pub fn work<H, F>(&self, concurrency: usize, handler: H) -> Workers
    where
        H: Fn(InboxDelivery) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        worker::start(self.clone(), concurrency.max(1), worker::plain(handler))
    }

    /// The dead letters of `tenant`, newest first, at most `limit`: what a tenant's own
    /// session may see.
    ///
    /// # Errors
    /// The store failed.
    pub async fn dead_letters(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner.store.dead_letters(Some(tenant), limit).await
    }

    /// Every tenant's dead letters, newest first, at most `limit`: an operator's view.
    ///
    /// # Errors
    /// The store failed.
    pub async fn all_dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner.store.dead_letters(None, limit).await
    }

    /// Tries `tenant`'s dead letter `id` again, its attempts counted afresh:
    /// [`Retried::NotFound`] when `tenant` has no such dead letter (another tenant's id is not
    /// found), [`Retried::TenantFull`] when `tenant` has its limit of deliveries waiting (so
    /// that retrying cannot go past it).
    ///
    /// # Errors
    /// The store failed.
    pub async fn retry(&self, tenant: &str, id: &str) -> Result<Retried, StoreError> {
        let limit = self.inner.settings.tenant_limit;
        self.retry_of(Some(tenant), id, limit).await
    }

    /// Tries the dead letter `id` of any tenant again, whatever its tenant has waiting: an
    /// operator's action.
    ///
    /// # Errors
    /// The store failed.
    pub async fn retry_any(&self, id: &str) -> Result<Retried, StoreError> {
        self.retry_of(None, id, u64::MAX).await
    }

    async fn retry_of(
        &self,
        tenant: Option<&str>,
        id: &str,
        limit: u64,
    ) -> Result<Retried, StoreError> {
        let retried = self
            .inner
            .store
            .retry(tenant, id, SystemTime::now(), limit)
            .await?;
        if retried == Retried::Due {
            self.inner.committed.notify_waiters();
        }
        Ok(retried)
    }

    /// How full the inbox is.
    ///
    /// # Errors
    /// The store failed.
    pub async fn stats(&self) -> Result<InboxStats, StoreError> {
        self.inner.store.stats().await
    }
}

impl<St: InboxStore> Inbox<St> {
    /// The limit a commit of `tenant` checks: the tenant's limit when it was read near it (or
    /// nothing was read yet), else none, so that a commit of a tenant far from its limit counts
    /// nothing. The tenants near their limit (half of it waiting) are read again every second,
    /// by one commit at a time, off the request: a tenant may go past its limit by what it
    /// sends within about a second.
    pub(crate) fn limit_for(&self, tenant: Option<&String>) -> u64 {
        let limit = self.inner.settings.tenant_limit;
        if limit == u64::MAX {
            return limit;
        }
        let mut crowded = self
            .inner
            .crowded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stale = crowded
            .tried_at
            .is_none_or(|at| at.elapsed() >= CROWDED_EVERY);
        if stale && !crowded.reading {
            crowded.reading = true;
            crowded.tried_at = Some(std::time::Instant::now());
            let inbox = self.clone();
            tokio::spawn(async move {
                let read = inbox.inner.store.crowded((limit / 2).max(1)).await;
                let mut crowded = inbox
                    .inner
                    .crowded
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                crowded.reading = false;
                if let Ok(tenants) = read {
                    crowded.tenants = tenants.into_iter().collect();
                    crowded.known = true;
                }
            });
        }
        if !crowded.known || crowded.tenants.contains(&tenant.cloned()) {
            limit
        } else {
            u64::MAX
        }
    }
}

#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
/// Milliseconds since the Unix epoch: how the stores keep times.
pub(crate) fn millis(time: SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
/// The time `millis` milliseconds after the Unix epoch.
pub(crate) fn from_millis(millis: i64) -> SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}
