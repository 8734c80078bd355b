//! The workers that hand the inbox's deliveries to the handler: leased, renewed while the
//! handler runs, tried again after a failure, dead letters after the last attempt.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use countersign_core::replay::Owner;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{BoxError, ClaimRequest, Inbox, InboxDelivery, InboxStore};
use crate::metrics;

/// How often the handled deliveries past their memory are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// How often the inbox's depth is read for the metrics.
const STATS_EVERY: Duration = Duration::from_secs(5);
/// The longest a failure text kept with a delivery.
const MAX_ERROR_LEN: usize = 500;

type Handler = Arc<dyn Fn(InboxDelivery) -> HandlerFuture + Send + Sync>;
type HandlerFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// Running workers ([`Inbox::work`]). Dropping them stops them at once, as a killed process
/// would: the deliveries they hold are taken over by others when their leases lapse (and that
/// attempt counts).
#[must_use = "the workers stop when this is dropped"]
pub struct Workers {
    claimer: tokio::task::JoinHandle<()>,
}

impl Workers {
    /// Stops taking deliveries and abandons those held (their leases lapse).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.claimer.abort();
    }
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers").finish_non_exhaustive()
    }
}

pub(super) fn start<St, H, F>(inbox: Inbox<St>, concurrency: usize, handler: Arc<H>) -> Workers
where
    St: InboxStore,
    H: Fn(InboxDelivery) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let handler: Handler = Arc::new(move |delivery| Box::pin(handler(delivery)));
    Workers {
        claimer: tokio::spawn(claim_loop(inbox, concurrency, handler)),
    }
}

/// Takes due deliveries while there is room, and runs each in a task of its own. The tasks
/// live in a set owned by this loop: aborting the loop aborts them.
async fn claim_loop<St: InboxStore>(inbox: Inbox<St>, concurrency: usize, handler: Handler) {
    let owner = Owner::random().as_str().to_owned();
    let room = Arc::new(Semaphore::new(concurrency));
    let mut running = JoinSet::new();
    let mut purged = tokio::time::Instant::now();
    let mut measured: Option<tokio::time::Instant> = None;
    let settings = inbox.inner.settings;
    loop {
        while running.try_join_next().is_some() {}
        if measured.is_none_or(|at| at.elapsed() >= STATS_EVERY) {
            measured = Some(tokio::time::Instant::now());
            if let Ok(stats) = inbox.inner.store.stats().await {
                metrics::inbox_stats(&stats);
            }
        }
        #[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
        drain(&inbox).await;
        let Ok(first) = Arc::clone(&room).acquire_owned().await else {
            return;
        };
        let mut permits = vec![first];
        while let Ok(permit) = Arc::clone(&room).try_acquire_owned() {
            permits.push(permit);
        }
        // Registered before the claim, so that a commit made while it runs still wakes us.
        let committed = inbox.inner.committed.notified();
        let now = SystemTime::now();
        let claimed = inbox
            .inner
            .store
            .claim(ClaimRequest {
                owner: &owner,
                now,
                lease_until: now.checked_add(settings.lease).unwrap_or(now),
                limit: permits.len(),
                tenant_concurrency: settings.tenant_concurrency,
                max_attempts: settings.backoff.max_attempts(),
                dead_until: now.checked_add(settings.dead_letter_ttl).unwrap_or(now),
            })
            .await;
        let batch = match claimed {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(target: "countersign", %error, "the inbox cannot be read; trying again");
                drop(permits);
                tokio::time::sleep(settings.poll).await;
                continue;
            }
        };
        if batch.is_empty() {
            drop(permits);
            if purged.elapsed() >= PURGE_EVERY {
                purged = tokio::time::Instant::now();
                if let Err(error) = inbox.inner.store.purge(SystemTime::now()).await {
                    tracing::warn!(target: "countersign", %error, "could not purge the inbox's handled deliveries");
                }
            }
            tokio::select! {
                () = committed => {}
                () = tokio::time::sleep(settings.poll) => {}
            }
            continue;
        }
        for (delivery, permit) in batch.into_iter().zip(permits.drain(..)) {
            let (inbox, handler, owner) = (inbox.clone(), Arc::clone(&handler), owner.clone());
            running.spawn(async move {
                attempt(&inbox, &handler, &owner, delivery).await;
                drop(permit);
            });
        }
    }
}

/// Moves what waits in the spool into the inbox, while the store takes it. Each was
/// acknowledged, so none is refused for its tenant's limit.
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
async fn drain<St: InboxStore>(inbox: &Inbox<St>) {
    let Some(spool) = &inbox.inner.spool else {
        return;
    };
    if spool.is_empty() {
        return;
    }
    let spool = spool.clone();
    let waiting = match tokio::task::spawn_blocking(move || (spool.peek(100), spool)).await {
        Ok(waiting) => waiting,
        Err(_) => return,
    };
    let (batch, spool) = waiting;
    for (delivery, expires_at) in batch {
        match inbox
            .inner
            .store
            .commit(&delivery, expires_at, u64::MAX)
            .await
        {
            Ok(_) => {
                let (spool, id) = (spool.clone(), delivery.id.clone());
                let _ = tokio::task::spawn_blocking(move || spool.remove(&id)).await;
            }
            Err(_) => return,
        }
    }
}

/// One attempt: the handler runs while the lease is renewed; then the delivery is marked
/// handled, due again, or dead.
async fn attempt<St: InboxStore>(
    inbox: &Inbox<St>,
    handler: &Handler,
    owner: &str,
    delivery: InboxDelivery,
) {
    let store = &inbox.inner.store;
    let settings = inbox.inner.settings;
    let (id, attempt) = (delivery.id.clone(), delivery.attempt);
    // This attempt's lease: a later attempt's (after this one's lapsed) is another.
    let lease = format!("{owner}:{attempt}");
    let owner = lease.as_str();
    let deadline = tokio::time::sleep(settings.attempt_timeout);
    tokio::pin!(deadline);
    // The handler in a task of its own: a panic is a failed attempt, not a dead worker. It
    // is aborted with this attempt (stopped workers hold nothing).
    let mut run = AbortOnDrop(tokio::spawn(handler(delivery)));
    let mut renewal = tokio::time::interval(settings.lease / 3);
    renewal.tick().await;
    let outcome = loop {
        tokio::select! {
            outcome = &mut run.0 => break outcome.map_err(|join| {
                if join.is_panic() { "the handler panicked" } else { "the handler was cancelled" }
            }),
            () = &mut deadline => break Err("the handler took longer than the attempt timeout"),
            _ = renewal.tick() => {
                let now = SystemTime::now();
                let until = now.checked_add(settings.lease).unwrap_or(now);
                match store.renew(&id, owner, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // Another worker took it over (this one stalled past its lease): its
                        // attempt is the one that counts now.
                        tracing::warn!(target: "countersign", delivery = %id, "lost the lease on a delivery while its handler ran");
                        metrics::outcome(metrics::INBOX_ATTEMPTS, "lost_lease");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(target: "countersign", delivery = %id, %error, "could not renew a lease");
                    }
                }
            }
        }
    };
    drop(run);
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(why) => Some(why.to_owned()),
    };
    let recorded = match failure {
        None => {
            metrics::outcome(metrics::INBOX_ATTEMPTS, "handled");
            store.complete(&id, owner).await
        }
        Some(mut error) => {
            if error.len() > MAX_ERROR_LEN {
                let mut end = MAX_ERROR_LEN;
                while !error.is_char_boundary(end) {
                    end -= 1;
                }
                error.truncate(end);
            }
            let retry_at = settings
                .backoff
                .after(attempt)
                .and_then(|wait| SystemTime::now().checked_add(wait));
            metrics::outcome(
                metrics::INBOX_ATTEMPTS,
                if retry_at.is_some() {
                    "retried"
                } else {
                    "dead"
                },
            );
            tracing::warn!(target: "countersign", delivery = %id, attempt, dead = retry_at.is_none(), %error, "the inbox's handler failed");
            let now = SystemTime::now();
            let dead_until = now.checked_add(settings.dead_letter_ttl).unwrap_or(now);
            store.fail(&id, owner, &error, retry_at, dead_until).await
        }
    };
    if let Err(error) = recorded {
        // The lease lapses, and the delivery is tried again: the handler must be idempotent.
        tracing::warn!(target: "countersign", delivery = %id, %error, "could not record an attempt's outcome");
    }
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
