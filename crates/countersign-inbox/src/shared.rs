//! What an inbox's endpoint, workers and drain share: the store, the settings, the spool and
//! the tenants near their limit. [`Inbox`](crate::Inbox) is the public handle on it.

use std::num::NonZeroU64;
use std::time::Duration;

use std::sync::Arc;

use countersign_core::inbox::Backoff;
use countersign_core::replay::StoreError;

use crate::batch::Batcher;
use crate::delivery::{Held, Outcome};
use crate::spool::Spool;

/// An inbox's state, behind the `Arc` every clone of its [`Inbox`](crate::Inbox), its
/// endpoint and its workers hold.
pub(crate) struct Shared<St> {
    pub(crate) store: St,
    pub(crate) settings: Settings,
    /// Where deliveries wait while the store is down.
    pub(crate) spool: Option<Spool>,
    /// Wakes this instance's idle workers when a delivery is committed here and left for a
    /// claim.
    pub(crate) committed: tokio::sync::Notify,
    /// This instance's pools that take commits' offers of first attempts, in the order they
    /// started: the last one takes them.
    pub(crate) offers: crate::offer::Registry,
    /// The tenants near their limit, as last read: only their commits count.
    pub(crate) crowded: std::sync::Mutex<Crowded>,
    /// The attempts' outcomes, written in groups ([`WorkerStore::record`](crate::WorkerStore::record)).
    pub(crate) outcomes: Arc<Batcher<(Held, Outcome), Result<bool, StoreError>>>,
    /// The attempts' renewals, written in groups ([`WorkerStore::renew_all`](crate::WorkerStore::renew_all)).
    pub(crate) renewals: Arc<Batcher<Held, Result<bool, StoreError>>>,
}

/// The most outcomes or renewals in one write.
pub(crate) const MOST_BOOKKEEPING: usize = 256;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) backoff: Backoff,
    pub(crate) lease: Duration,
    pub(crate) margin: Duration,
    pub(crate) retry_horizon: Duration,
    /// `None`: no limit (one at or past `i64::MAX`, which no database counts to).
    pub(crate) tenant_limit: Option<NonZeroU64>,
    pub(crate) tenant_concurrency: u64,
    pub(crate) attempt_timeout: Duration,
    pub(crate) dead_letter_ttl: Duration,
    pub(crate) poll: Duration,
    pub(crate) purge_every: Duration,
}

/// The tenants with half their limit or more waiting, read at most every a second.
#[derive(Default)]
pub(crate) struct Crowded {
    pub(crate) tenants: std::collections::HashSet<Option<String>>,
    /// Whether they were ever read (if not, every commit counts).
    pub(crate) known: bool,
    /// When a reading last began: one a second at most, even while they fail.
    pub(crate) tried_at: Option<std::time::Instant>,
    pub(crate) reading: bool,
}
