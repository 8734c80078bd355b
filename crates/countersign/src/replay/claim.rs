//! A claim's life: asked (again, when the store's answer was lost), renewed while its handler
//! runs, and settled (done, or released) however the request ends.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use countersign_core::replay::{self, Claim, Owner, ReplayKey, ReplayStore, StoreError};

use super::COMPLETE_RETRIES;

/// Claims `key` ([`replay::claim`]: asked twice when the store's answer was lost). If the store
/// stays silent, a claim it may have applied is released in the background (and lapses with
/// its lease anyway).
pub(super) async fn claim<St: ReplayStore>(
    store: &Arc<St>,
    key: &ReplayKey,
    owner: &Owner,
    lease: Duration,
) -> Result<Claim, StoreError> {
    let answer = replay::claim(store.as_ref(), key, owner, lease, |first| {
        tracing::warn!(target: "countersign", error = %first, delivery = %key, "claiming failed; asking the store again");
    })
    .await;
    if answer.is_err() {
        release_in_background(Arc::clone(store), *key, owner.clone());
    }
    answer
}

/// Renews `owner`'s lease on `key` every third of `lease`, for as long as it is polled.
pub(super) async fn renew<St: ReplayStore>(
    store: &Arc<St>,
    key: &ReplayKey,
    owner: &Owner,
    lease: Duration,
) -> Infallible {
    let every = lease / 3;
    loop {
        tokio::time::sleep(every).await;
        match store.renew(key, owner, lease).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(target: "countersign", delivery = %key, "the claim lapsed while its handler ran: a retry may run concurrently");
                return std::future::pending().await;
            }
            Err(error) => {
                tracing::warn!(target: "countersign", %error, delivery = %key, "could not renew the claim; trying again");
            }
        }
    }
}

/// A claim this request holds. Dropped before it is settled (the request's future dropped),
/// it releases the claim in the background, so that the sender's retry runs at once.
pub(super) struct Held<St: ReplayStore> {
    store: Arc<St>,
    key: ReplayKey,
    pub(super) owner: Owner,
    settled: bool,
}

impl<St: ReplayStore> Held<St> {
    pub(super) fn new(store: Arc<St>, key: ReplayKey, owner: Owner) -> Self {
        Self {
            store,
            key,
            owner,
            settled: false,
        }
    }

    /// Marks the delivery done (`handled`) or releases it. A failed mark is retried in the
    /// background; a failed release is left to the lease.
    pub(super) async fn settle(mut self, handled: bool, window: Duration) {
        self.settled = true;
        let (store, key, owner) = (Arc::clone(&self.store), self.key, self.owner.clone());
        if !handled {
            if let Err(error) = store.release(&key, &owner).await {
                tracing::warn!(target: "countersign", %error, delivery = %key, "could not release the claim; it lapses with its lease");
            }
            return;
        }
        let Err(error) = store.complete(&key, &owner, window).await else {
            return;
        };
        tracing::error!(target: "countersign", %error, delivery = %key, "could not mark the handled delivery done; retrying in the background");
        spawn(async move {
            for pause in COMPLETE_RETRIES {
                tokio::time::sleep(pause).await;
                match store.complete(&key, &owner, window).await {
                    Ok(()) => {
                        tracing::info!(target: "countersign", delivery = %key, "marked the handled delivery done after a retry");
                        return;
                    }
                    Err(error) => {
                        tracing::error!(target: "countersign", %error, delivery = %key, "could not mark the handled delivery done");
                    }
                }
            }
            tracing::error!(target: "countersign", delivery = %key, "gave up marking the handled delivery done: a replay of it would be handled again");
        });
    }
}

impl<St: ReplayStore> Drop for Held<St> {
    fn drop(&mut self) {
        if !self.settled {
            tracing::info!(target: "countersign", delivery = %self.key, "the request was dropped before it was answered; releasing its claim");
            release_in_background(Arc::clone(&self.store), self.key, self.owner.clone());
        }
    }
}

/// Releases `owner`'s claim of `key` without waiting; if that fails, the lease lapses.
fn release_in_background<St: ReplayStore>(store: Arc<St>, key: ReplayKey, owner: Owner) {
    spawn(async move {
        if let Err(error) = store.release(&key, &owner).await {
            tracing::warn!(target: "countersign", %error, delivery = %key, "could not release the claim; it lapses with its lease");
        }
    });
}

/// Runs `task` on the current Tokio runtime, if there is one (there is none while a runtime
/// shuts down: the leases lapse by themselves then).
fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}
