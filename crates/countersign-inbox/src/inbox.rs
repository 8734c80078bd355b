//! [`Inbox`]: the builder of settings over a store, and what an operator asks of it.

use std::fmt;
use std::future::Future;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use countersign_core::inbox::Backoff;
use countersign_core::replay::StoreError;

use crate::acknowledge::Acknowledge;
use crate::batch::Batcher;
use crate::delivery::{BoxError, DeadLetter, InboxDelivery, InboxStats, Retried};
use crate::shared::{MOST_BOOKKEEPING, Settings, Shared};
use crate::spool::Spool;
use crate::store::InboxStore;
use crate::worker::{self, Workers};

/// How many deliveries of one tenant may wait in the inbox (pending or running) before its
/// next ones are refused with 503 `inbox_tenant_full`.
pub const DEFAULT_TENANT_LIMIT: NonZeroU64 = NonZeroU64::new(10_000).expect("not zero");
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
/// How often a worker pool forgets the handled deliveries and dead letters past their time.
pub const DEFAULT_PURGE_EVERY: Duration = Duration::from_secs(60);
/// How many deliveries of one tenant run at once, across every instance: a tenant whose
/// handlers are slow or hang holds no more workers than this.
pub const DEFAULT_TENANT_CONCURRENCY: u64 = 2;
/// How long one attempt may run before it counts as failed.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a dead letter is kept (then forgotten, body and all).
pub const DEFAULT_DEAD_LETTER_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A durable inbox over a store. See the [crate docs](crate). Cheap to clone; clones share
/// everything.
pub struct Inbox<St> {
    pub(crate) inner: Arc<Shared<St>>,
}

impl<St> Clone for Inbox<St> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
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
    /// [`DEFAULT_ATTEMPT_TIMEOUT`], [`DEFAULT_DEAD_LETTER_TTL`], [`DEFAULT_POLL`] and
    /// [`DEFAULT_PURGE_EVERY`]. Set
    /// them with the `with_*` methods before cloning the inbox (they panic after).
    pub fn new(store: St) -> Self {
        Self {
            inner: Arc::new(Shared {
                store,
                settings: Settings {
                    backoff: Backoff::default(),
                    lease: DEFAULT_LEASE,
                    margin: DEFAULT_MARGIN,
                    retry_horizon: DEFAULT_RETRY_HORIZON,
                    tenant_limit: Some(DEFAULT_TENANT_LIMIT),
                    tenant_concurrency: DEFAULT_TENANT_CONCURRENCY,
                    attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
                    dead_letter_ttl: DEFAULT_DEAD_LETTER_TTL,
                    poll: DEFAULT_POLL,
                    purge_every: DEFAULT_PURGE_EVERY,
                },
                spool: None,
                committed: tokio::sync::Notify::new(),
                offers: crate::offer::Registry::default(),
                crowded: std::sync::Mutex::default(),
                outcomes: Arc::new(Batcher::new(MOST_BOOKKEEPING, usize::MAX, |_| 0)),
                renewals: Arc::new(Batcher::new(MOST_BOOKKEEPING, usize::MAX, |_| 0)),
            }),
        }
    }

    fn reconfigure(self, change: impl FnOnce(&mut Settings)) -> Self {
        self.rebuild(|inner| change(&mut inner.settings))
    }

    fn rebuild(self, change: impl FnOnce(&mut Shared<St>)) -> Self {
        Self {
            inner: configure(self.inner, change),
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

    /// How many deliveries of one tenant may wait (at least 1; [`DEFAULT_TENANT_LIMIT`]). No
    /// database counts to `i64::MAX`: a limit that high is none ([`Inbox::without_tenant_limit`]).
    #[must_use]
    pub fn with_tenant_limit(self, limit: u64) -> Self {
        let limit = NonZeroU64::new(limit.max(1)).filter(|limit| limit.get() < i64::MAX as u64);
        self.reconfigure(|settings| settings.tenant_limit = limit)
    }

    /// Lets every tenant keep as many deliveries waiting as it sends: for an app that serves
    /// one stack or space of its own, never for an app strangers install.
    #[must_use]
    pub fn without_tenant_limit(self) -> Self {
        self.reconfigure(|settings| settings.tenant_limit = None)
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

    /// How often the workers forget the handled deliveries and dead letters past their time,
    /// busy or idle: [`DEFAULT_PURGE_EVERY`] (60 s) by default, clamped to 100 ms at the least.
    /// Each process's workers purge on their own, the first time one period after they start.
    /// A process that stops sooner never purges: shorten the period, or call [`Inbox::purge`]
    /// before it stops. A purge reads the rows past their time, at most 5,000 rows or 64 MiB of
    /// bodies a transaction.
    #[must_use]
    pub fn with_purge_every(self, every: Duration) -> Self {
        let every = every.clamp(Duration::from_millis(100), countersign_core::MAX_WINDOW);
        self.reconfigure(|settings| settings.purge_every = every)
    }

    /// Keeps verified deliveries in `spool`, this instance's own directory, while the store
    /// cannot be reached, and acknowledges them; this instance's workers move them into the
    /// inbox once it is back. Only a full spool answers 503.
    #[must_use]
    pub fn with_spool(self, spool: Spool) -> Self {
        self.rebuild(|inner| inner.spool = Some(spool))
    }

    /// The route's endpoint, behind a verification layer: commits each verified delivery and
    /// answers it (see the [crate docs](crate)).
    #[must_use]
    pub fn acknowledge(&self) -> Acknowledge<St> {
        Acknowledge::new(Arc::clone(&self.inner))
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
        worker::start(
            Arc::clone(&self.inner),
            concurrency.max(1),
            worker::plain(handler),
        )
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
        let limit = self.inner.settings.tenant_limit.map(NonZeroU64::get);
        self.retry_of(Some(tenant), id, limit).await
    }

    /// Tries the dead letter `id` of any tenant again, whatever its tenant has waiting: an
    /// operator's action.
    ///
    /// # Errors
    /// The store failed.
    pub async fn retry_any(&self, id: &str) -> Result<Retried, StoreError> {
        self.retry_of(None, id, None).await
    }

    async fn retry_of(
        &self,
        tenant: Option<&str>,
        id: &str,
        limit: Option<u64>,
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

    /// Forgets the handled deliveries and dead letters past their time, now, as the workers do
    /// every [`Inbox::with_purge_every`]. Returns how many it forgot. A process that does not
    /// live that long (a scheduled function's worker, which ends once nothing is waiting) calls
    /// it before it stops: otherwise nothing is ever forgotten, and the table only grows.
    ///
    /// # Errors
    /// The store failed; what earlier batches forgot stays forgotten.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        self.inner.store.purge(SystemTime::now()).await
    }
}

/// `shared` changed by `change`, for a builder method: it must not have been cloned yet (a
/// clone would keep the old settings), and panics when it was.
fn configure<St>(shared: Arc<Shared<St>>, change: impl FnOnce(&mut Shared<St>)) -> Arc<Shared<St>> {
    match Arc::try_unwrap(shared) {
        Ok(mut inner) => {
            change(&mut inner);
            Arc::new(inner)
        }
        Err(shared) => panic!(
            "configure the Inbox before cloning it ({} clones)",
            Arc::strong_count(&shared)
        ),
    }
}
