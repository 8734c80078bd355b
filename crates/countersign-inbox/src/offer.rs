//! Free workers' offers to commits: a commit that holds one may lease its delivery to that
//! worker in the same write ([`WorkerStore::commit_and_lease`](crate::WorkerStore::commit_and_lease)),
//! and the delivery then goes to the worker at once, with no claim.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::delivery::InboxDelivery;

/// The pools of an inbox that take commits' offers, in the order they started: the last one
/// running takes them.
#[derive(Default)]
pub(crate) struct Registry(Mutex<Vec<Arc<Offers>>>);

/// A running pool's workers, as the request path sees them.
pub(crate) struct Offers {
    room: Arc<Semaphore>,
    owner: String,
    /// Numbers each claim's and each offer's owner: a lease is never the same twice.
    leases: Arc<AtomicU64>,
    to_workers: mpsc::UnboundedSender<Taken>,
    /// Whether the pool's last claim took fewer deliveries than it had places for (and,
    /// before the first claim, `true`): only then does a commit take a free worker's place.
    /// While claims come back full (a backlog), a place held by a commit would be one less
    /// for the next claim, and the commit would not be leased anyway.
    open: AtomicBool,
}

/// A first attempt offered with a commit: a free worker's place, and the lease it would hold.
pub(crate) struct Offer {
    permit: OwnedSemaphorePermit,
    owner: String,
    /// `{owner}:1`.
    pub(crate) lease: String,
    /// When the lease ends unless renewed, and the same instant on the workers' clock.
    pub(crate) lease_until: SystemTime,
    leased_at: tokio::time::Instant,
    to_workers: mpsc::UnboundedSender<Taken>,
}

/// A delivery leased with its commit, or by a claim, on its way to the worker whose place
/// (`permit`) it holds.
pub(crate) struct Taken {
    pub(crate) delivery: InboxDelivery,
    pub(crate) owner: String,
    pub(crate) leased_at: tokio::time::Instant,
    pub(crate) permit: OwnedSemaphorePermit,
}

impl Offers {
    /// A pool's: its places `room`, its owner and lease numbering, and where deliveries
    /// leased with their commits go.
    pub(crate) fn new(
        room: Arc<Semaphore>,
        owner: String,
        leases: Arc<AtomicU64>,
        to_workers: mpsc::UnboundedSender<Taken>,
    ) -> Self {
        Self {
            room,
            owner,
            leases,
            to_workers,
            open: AtomicBool::new(true),
        }
    }
}

impl Registry {
    /// A free worker's place for a commit's first attempt, leased for `lease`, if the last
    /// pool started has one.
    pub(crate) fn offer(&self, lease: Duration) -> Option<Offer> {
        let offers = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .cloned()?;
        if !offers.open.load(Ordering::Relaxed) {
            return None;
        }
        let permit = Arc::clone(&offers.room).try_acquire_owned().ok()?;
        let owner = format!(
            "{}.{}",
            offers.owner,
            offers.leases.fetch_add(1, Ordering::Relaxed) + 1
        );
        let (now, leased_at) = (SystemTime::now(), tokio::time::Instant::now());
        Some(Offer {
            permit,
            lease: format!("{owner}:1"),
            owner,
            lease_until: now.checked_add(lease).unwrap_or(now),
            leased_at,
            to_workers: offers.to_workers.clone(),
        })
    }

    /// Adds a pool's `offers`, withdrawn when the guard is dropped (the pool stopped or was
    /// aborted).
    pub(crate) fn join(&self, offers: Offers) -> Offering<'_> {
        let offers = Arc::new(offers);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&offers));
        Offering {
            registry: self,
            offers,
        }
    }
}

impl Offer {
    /// How long ago the lease began (as the workers' clock reads it).
    pub(crate) fn leased_for(&self) -> Duration {
        self.leased_at.elapsed()
    }

    /// Hands `delivery`, committed leased to this offer, to its worker: `false` when the
    /// pool stopped meanwhile.
    pub(crate) fn take(self, mut delivery: InboxDelivery) -> bool {
        delivery.attempt = 1;
        self.to_workers
            .send(Taken {
                delivery,
                owner: self.owner,
                leased_at: self.leased_at,
                permit: self.permit,
            })
            .is_ok()
    }
}

/// A pool's offers, withdrawn when this is dropped.
pub(crate) struct Offering<'a> {
    registry: &'a Registry,
    offers: Arc<Offers>,
}

impl Offering<'_> {
    /// Records whether the pool's last claim took fewer deliveries than it had places for.
    pub(crate) fn open(&self, open: bool) {
        self.offers.open.store(open, Ordering::Relaxed);
    }
}

impl Drop for Offering<'_> {
    fn drop(&mut self) {
        self.registry
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|offers| !Arc::ptr_eq(offers, &self.offers));
    }
}
