//! The workers that hand the inbox's deliveries to the handler: leased, renewed while the
//! handler runs, tried again after a failure, dead letters after the last attempt.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use countersign_core::replay::{Owner, StoreError, StoreErrorKind};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::delivery::{BoxError, ClaimRequest, GiveUp, Held, InboxDelivery, Outcome};
use crate::drain::{HeldBack, drain};
use crate::metrics;
use crate::offer::{Offers, Taken};
use crate::shared::Shared;
use crate::store::InboxStore;

/// How often the inbox's depth is read for the metrics.
const STATS_EVERY: Duration = Duration::from_secs(5);
/// The longest a failure text kept with a delivery.
const MAX_ERROR_LEN: usize = 500;

/// A handler as the workers call it: the delivery and its attempt's lease.
pub(crate) type Run = Arc<dyn Fn(InboxDelivery, String) -> HandlerFuture + Send + Sync>;

/// A handler, and whether its effects commit in the inbox's transaction, with the lease
/// checked there ([`in_transaction`]): such a run is never stopped for want of a renewal,
/// since a second run beside it commits nothing unless it holds the lease.
#[derive(Clone)]
pub(crate) struct Handler {
    run: Run,
    in_transaction: bool,
}

/// A handler whose writes and "handled" commit together, if its lease is still its own.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn in_transaction(run: Run) -> Handler {
    Handler {
        run,
        in_transaction: true,
    }
}

type HandlerFuture = std::pin::Pin<Box<dyn Future<Output = Result<Handled, BoxError>> + Send>>;

/// What a successful handler left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Only a store's transactional handler completes in its own transaction.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) enum Handled {
    /// The worker marks the delivery handled.
    ToComplete,
    /// Marked handled in the handler's own transaction, with its effects.
    Completed,
    /// The lease was another attempt's when the handler's transaction would have committed:
    /// its effects were rolled back.
    LostLease,
}

/// Running workers ([`Inbox::work`](crate::Inbox::work)). [`Workers::shutdown`] lets the attempts under way
/// finish; dropping them stops them at once, as a killed process would: the deliveries they
/// hold are taken over by others when their leases lapse (and that attempt counts).
#[must_use = "the workers stop when this is dropped"]
pub struct Workers {
    claimer: Option<tokio::task::JoinHandle<()>>,
    stop: Arc<tokio::sync::Notify>,
}

impl Workers {
    /// Stops taking deliveries and abandons those held (their leases lapse).
    pub fn stop(self) {
        drop(self);
    }

    /// Stops taking deliveries, and waits up to `grace` for the attempts under way to finish
    /// and be recorded; those still running then are abandoned (their leases lapse). Call it
    /// when the server stops (after it stopped accepting requests).
    pub async fn shutdown(mut self, grace: Duration) {
        let Some(mut claimer) = self.claimer.take() else {
            return;
        };
        self.stop.notify_one();
        if tokio::time::timeout(grace, &mut claimer).await.is_err() {
            claimer.abort();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if let Some(claimer) = &self.claimer {
            claimer.abort();
        }
    }
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers").finish_non_exhaustive()
    }
}

/// A handler whose success leaves the worker to mark the delivery handled.
pub(crate) fn plain<H, F>(handler: H) -> Handler
where
    H: Fn(InboxDelivery) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    Handler {
        run: Arc::new(move |delivery, _lease| {
            let run = handler(delivery);
            Box::pin(async move { run.await.map(|()| Handled::ToComplete) })
        }),
        in_transaction: false,
    }
}

pub(crate) fn start<St: InboxStore>(
    shared: Arc<Shared<St>>,
    concurrency: usize,
    handler: Handler,
) -> Workers {
    let stop = Arc::new(tokio::sync::Notify::new());
    Workers {
        claimer: Some(tokio::spawn(claim_loop(
            shared,
            concurrency,
            handler,
            Arc::clone(&stop),
        ))),
        stop,
    }
}

/// The ends of a pool's attempts, claimed or handed over: counted, and told to the claim loop.
#[derive(Default)]
struct Ends {
    count: AtomicU64,
    told: tokio::sync::Notify,
}

/// Runs `taken` in a task of `running`: the attempt; then its end counted, its worker's place
/// freed (in that order: a place seen free has its end counted), and the end told.
fn run<St: InboxStore>(
    running: &mut JoinSet<()>,
    shared: &Arc<Shared<St>>,
    handler: &Handler,
    ended: &Arc<Ends>,
    taken: Taken,
) {
    let (shared, handler, ended) = (Arc::clone(shared), handler.clone(), Arc::clone(ended));
    running.spawn(async move {
        let Taken {
            delivery,
            owner,
            leased_at,
            permit,
        } = taken;
        attempt(&shared, &handler, &owner, delivery, leased_at).await;
        ended.count.fetch_add(1, Ordering::SeqCst);
        drop(permit);
        ended.told.notify_one();
    });
}

/// Runs each delivery a commit leased to this pool as it arrives, whatever the claims are
/// doing, until no commit can send one any more; then waits for those attempts to end. The
/// attempts live in a set owned by this task: aborting it aborts them.
async fn hand_overs<St: InboxStore>(
    shared: Arc<Shared<St>>,
    handler: Handler,
    ended: Arc<Ends>,
    mut taken: mpsc::UnboundedReceiver<Taken>,
) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            received = taken.recv() => match received {
                Some(taken) => run(&mut running, &shared, &handler, &ended, taken),
                None => break,
            },
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    while running.join_next().await.is_some() {}
}

/// Takes due deliveries while there is room, and runs each in a task of its own; beside it,
/// [`hand_overs`] runs those the request path leased to its free workers. The tasks live in
/// sets owned by this loop: aborting the loop aborts them.
///
/// An idle pool claims only when there may be something to take: a delivery committed here
/// and left for a claim, the poll interval (other instances' commits, retries coming due), or,
/// when its last claim left something due (a tenant at its concurrency), an attempt's end.
/// The deliveries leased with their commits end without a claim after them.
async fn claim_loop<St: InboxStore>(
    shared: Arc<Shared<St>>,
    concurrency: usize,
    handler: Handler,
    stop: Arc<tokio::sync::Notify>,
) {
    let owner = Owner::random().as_str().to_owned();
    let leases = Arc::new(AtomicU64::new(0));
    let room = Arc::new(Semaphore::new(concurrency));
    let ended = Arc::new(Ends::default());
    let (to_workers, taken) = mpsc::unbounded_channel();
    let mut handing = JoinSet::new();
    handing.spawn(hand_overs(
        Arc::clone(&shared),
        handler.clone(),
        Arc::clone(&ended),
        taken,
    ));
    // The pool started last (of those running) takes the commits' offers.
    let offering = shared.store.leases_on_commit().then(|| {
        shared.offers.join(Offers::new(
            Arc::clone(&room),
            owner.clone(),
            Arc::clone(&leases),
            to_workers,
        ))
    });
    let mut running = JoinSet::new();
    // The inbox's depth and its purge beside the claims, each on its own: neither waits for
    // a free worker, nor holds up a claim or the other. Aborted with this loop.
    let mut housekeeping = JoinSet::new();
    housekeeping.spawn(measure(Arc::clone(&shared)));
    housekeeping.spawn(purge(Arc::clone(&shared)));
    let mut held_back = HeldBack::new();
    let settings = shared.settings;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    'claims: loop {
        while running.try_join_next().is_some() {}
        drain(&shared, &mut held_back).await;
        let first = tokio::select! {
            permit = Arc::clone(&room).acquire_owned() => permit,
            () = &mut stopped => break,
        };
        let Ok(first) = first else {
            return;
        };
        // The attempts recorded in one write free their workers together: once they have
        // run, one claim takes a delivery for each.
        tokio::task::yield_now().await;
        let mut permits = vec![first];
        while let Ok(permit) = Arc::clone(&room).try_acquire_owned() {
            permits.push(permit);
        }
        // Attempts that end from here on may free a turn this claim does not see.
        let ended_before = ended.count.load(Ordering::SeqCst);
        // Registered before the claim, so that a commit made while it runs still wakes us.
        let committed = shared.committed.notified();
        tokio::pin!(committed);
        // Each claim its own owner: a lease is never the same twice, even for an attempt
        // number seen before (a dead letter tried again counts afresh).
        let claims = leases.fetch_add(1, Ordering::Relaxed) + 1;
        let owner = format!("{owner}.{claims}");
        let now = SystemTime::now();
        let leased_at = tokio::time::Instant::now();
        let claimed = shared
            .store
            .claim(ClaimRequest {
                owner: &owner,
                now,
                lease_until: now.checked_add(settings.lease).unwrap_or(now),
                limit: permits.len(),
                tenant_concurrency: settings.tenant_concurrency,
                max_attempts: settings.backoff.max_attempts(),
                dead_until: now.checked_add(settings.dead_letter_ttl).unwrap_or(now),
                rotation: rotation(claims),
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
        // While claims come back full, commits leave their worker's places to the next claim.
        if let Some(offering) = &offering {
            offering.open(batch.len() < permits.len());
        }
        if batch.is_empty() {
            drop(permits);
            // Nothing to take, or nothing this claim could take: every due delivery's tenant
            // may be at its concurrency with attempts of ours, and then the next one that ends
            // frees a turn (waiting for the poll instead held a tenant of one space to its
            // concurrency per poll interval). Whether anything is due says which.
            // (Only an attempt of ours ending wakes the loop: with none under way, and none
            // ended since the claim began, it is moot.)
            let running_now = room.available_permits() < concurrency;
            let ours = running_now || ended.count.load(Ordering::SeqCst) != ended_before;
            let left_due = ours && shared.store.anything_due(now).await.unwrap_or(true);
            let poll = tokio::time::sleep(settings.poll);
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    () = &mut stopped => break 'claims,
                    () = &mut committed => break,
                    () = &mut poll => break,
                    () = ended.told.notified(), if left_due => break,
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                }
            }
            continue;
        }
        for (delivery, permit) in batch.into_iter().zip(permits.drain(..)) {
            let taken = Taken {
                delivery,
                owner: owner.clone(),
                leased_at,
                permit,
            };
            run(&mut running, &shared, &handler, &ended, taken);
        }
    }
    // Stopping: no more offers, and once the commits that took one are through, no more
    // deliveries for the hand-overs; the attempts under way, claimed or handed over, finish
    // and are recorded.
    drop(offering);
    while running.join_next().await.is_some() {}
    while handing.join_next().await.is_some() {}
}

/// Reads the inbox's depth for the metrics every [`STATS_EVERY`], until aborted.
async fn measure<St: InboxStore>(shared: Arc<Shared<St>>) {
    let mut every = tokio::time::interval(STATS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Ok(stats) = shared.store.stats().await {
            metrics::inbox_depth(
                [
                    ("pending", stats.pending),
                    ("leased", stats.leased),
                    ("dead", stats.dead),
                ],
                stats
                    .oldest_unhandled
                    .and_then(|oldest| oldest.elapsed().ok()),
            );
        }
    }
}

/// Forgets the handled deliveries and dead letters past their time every `purge_every`,
/// busy or idle, until aborted. It used to wait in the claim loop: a purge ran only when a
/// claim came back empty (a pool that always found work forgot nothing, and its table grew),
/// and not at all while every worker was held by a slow handler.
async fn purge<St: InboxStore>(shared: Arc<Shared<St>>) {
    let period = shared.settings.purge_every;
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(error) = shared.store.purge(SystemTime::now()).await {
            tracing::warn!(target: "countersign", %error, "could not purge the inbox's handled deliveries");
        }
    }
}

/// One attempt: the handler runs while the lease is renewed; then the delivery is marked
/// handled, due again, or dead. `leased_at` is when the claim read the clock: the lease runs
/// from there.
///
/// A worker that cannot renew stops its handler before its lease may lapse (at
/// [`LAPSE_SHARE`] of a lease since the last renewal it asked for): past that, another
/// worker may take the delivery over, and two runs would overlap. A handler in the inbox's
/// transaction runs on: its effects commit only with its lease (and SQLite's, holding the
/// database, keeps the renewals waiting).
async fn attempt<St: InboxStore>(
    shared: &Arc<Shared<St>>,
    handler: &Handler,
    owner: &str,
    delivery: InboxDelivery,
    leased_at: tokio::time::Instant,
) {
    let settings = shared.settings;
    let (id, attempt) = (delivery.id.clone(), delivery.attempt);
    // This attempt's lease: a later attempt's (after this one's lapsed) is another.
    let lease = format!("{owner}:{attempt}");
    let held = Held {
        id: id.clone(),
        lease: lease.clone(),
    };
    let held_for = settings.lease.mul_f64(LAPSE_SHARE);
    let deadline = tokio::time::sleep(settings.attempt_timeout);
    tokio::pin!(deadline);
    // When this worker must let go unless a renewal succeeds first.
    let mut held_until = leased_at + held_for;
    let lapse = tokio::time::sleep_until(held_until);
    tokio::pin!(lapse);
    // The handler in a task of its own: a panic is a failed attempt, not a dead worker. It
    // is aborted with this attempt (stopped workers hold nothing).
    let mut run = AbortOnDrop(tokio::spawn((handler.run)(delivery, lease.clone())));
    let mut renewal = tokio::time::interval(settings.lease / 3);
    renewal.tick().await;
    let outcome = loop {
        tokio::select! {
            // The handler first: a success that is ready is recorded, whatever else is.
            biased;
            outcome = &mut run.0 => break outcome.map_err(|join| {
                if join.is_panic() { "the handler panicked" } else { "the handler was cancelled" }
            }),
            () = &mut deadline => break Err("the handler took longer than the attempt timeout"),
            () = &mut lapse, if !handler.in_transaction => {
                // Renewals failed for most of a lease: another worker may take it over now,
                // so this run stops here (aborted when `run` drops) and the next one counts.
                tracing::warn!(target: "countersign", delivery = %id, "could not renew a lease for most of its length: the handler was stopped, and the delivery will be taken over");
                metrics::outcome(metrics::INBOX_ATTEMPTS, "lost_lease");
                return;
            }
            _ = renewal.tick() => {
                let asked_at = tokio::time::Instant::now();
                // A plain handler's renewal may take until it must let go; one in the inbox's
                // transaction runs on, so each renewal gets a third of a lease.
                let answer_by = if handler.in_transaction {
                    asked_at + settings.lease / 3
                } else {
                    held_until
                };
                match tokio::time::timeout_at(answer_by, renew(shared, held.clone())).await {
                    Ok(Ok(true)) => {
                        held_until = asked_at + held_for;
                        lapse.as_mut().reset(held_until);
                    }
                    Ok(Ok(false)) => {
                        // Another worker took it over (this one stalled past its lease): its
                        // attempt is the one that counts now.
                        tracing::warn!(target: "countersign", delivery = %id, "lost the lease on a delivery while its handler ran");
                        metrics::outcome(metrics::INBOX_ATTEMPTS, "lost_lease");
                        return;
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(target: "countersign", delivery = %id, %error, "could not renew a lease");
                    }
                    // The lapse fires next.
                    Err(_) => {}
                }
            }
        }
    };
    drop(run);
    // The outcome's writes check the lease themselves: they are tried for as long as it may
    // still be this attempt's.
    let record_until = held_until.max(tokio::time::Instant::now() + held_for);
    let (failure, give_up) = match outcome {
        Ok(Ok(Handled::ToComplete)) => {
            metrics::outcome(metrics::INBOX_ATTEMPTS, "handled");
            let completed = record(record_until, || {
                write_outcome(shared, held.clone(), Outcome::Handled)
            })
            .await;
            if completed == Some(false) {
                // Taken over after all (this worker's clock ran slow, or the store's lease
                // lapsed first): the other attempt runs the handler again.
                tracing::warn!(target: "countersign", delivery = %id, "a handler succeeded after its lease was another attempt's: a second run may follow, which its idempotency must absorb");
                metrics::outcome(metrics::INBOX_ATTEMPTS, "late_success");
            }
            return;
        }
        Ok(Ok(Handled::Completed)) => {
            metrics::outcome(metrics::INBOX_ATTEMPTS, "handled");
            return;
        }
        Ok(Ok(Handled::LostLease)) => {
            tracing::warn!(target: "countersign", delivery = %id, "lost the lease on a delivery while its handler ran; its transaction was rolled back");
            metrics::outcome(metrics::INBOX_ATTEMPTS, "lost_lease");
            return;
        }
        Ok(Err(error)) => match error.downcast_ref::<StoreFailed>() {
            // The inbox's own database, not the handler: its error names hosts and tables,
            // and the dead letter is the tenant's to read.
            Some(failed) => {
                tracing::warn!(target: "countersign", delivery = %id, error = %failed, "the inbox's database failed during an attempt");
                (STORE_FAILED.to_owned(), false)
            }
            None => (error.to_string(), error.downcast_ref::<GiveUp>().is_some()),
        },
        Err(why) => (why.to_owned(), false),
    };
    // Kept as text every store takes (PostgreSQL's holds no NUL), so that one tenant's error
    // never fails the outcomes written with it.
    let mut error = failure.replace('\0', "\u{fffd}");
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
        .filter(|_| !give_up)
        .and_then(|wait| SystemTime::now().checked_add(wait));
    let dead = retry_at.is_none();
    metrics::outcome(
        metrics::INBOX_ATTEMPTS,
        if dead { "dead" } else { "retried" },
    );
    // Escaped: the text is the handler's, and may repeat a tenant's bytes.
    tracing::warn!(target: "countersign", delivery = %id, attempt, dead, error = ?error, "the inbox's handler failed");
    let now = SystemTime::now();
    let dead_until = now.checked_add(settings.dead_letter_ttl).unwrap_or(now);
    let failed = Outcome::Failed {
        error,
        retry_at,
        dead_until,
    };
    record(record_until, || {
        write_outcome(shared, held.clone(), failed.clone())
    })
    .await;
}

/// Records an attempt's outcome, tried again on a store error until the lease is held no
/// more (then the delivery is taken over, and the handler must bear a second run): whether
/// the lease was still this attempt's, `None` when it could not be told.
async fn record<F, Fut>(held_until: tokio::time::Instant, write: F) -> Option<bool>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<bool, countersign_core::replay::StoreError>>,
{
    let mut wait = Duration::from_millis(50);
    loop {
        match tokio::time::timeout_at(held_until, write()).await {
            Ok(Ok(recorded)) => return Some(recorded),
            Ok(Err(error)) => {
                tracing::warn!(target: "countersign", %error, "could not record an attempt's outcome; trying again");
            }
            Err(_) => break,
        }
        if tokio::time::Instant::now() + wait >= held_until {
            break;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
    tracing::warn!(target: "countersign", "could not record an attempt's outcome within its lease: the delivery will be taken over and tried again");
    None
}

/// Records `outcome` of the attempt on `held`, in one write with the others that end while
/// one is under way.
async fn write_outcome<St: InboxStore>(
    shared: &Arc<Shared<St>>,
    held: Held,
    outcome: Outcome,
) -> Result<bool, StoreError> {
    let writer = Arc::clone(shared);
    let write = move |group: Vec<(Held, Outcome)>| {
        let shared = Arc::clone(&writer);
        async move { each(group.len(), shared.store.record(&group).await) }
    };
    shared
        .outcomes
        .submit((held, outcome), write)
        .await
        .unwrap_or_else(|| Err(stopped()))
}

/// Extends the lease on `held` by a lease from now, in one write with the others asked for
/// while one is under way.
async fn renew<St: InboxStore>(shared: &Arc<Shared<St>>, held: Held) -> Result<bool, StoreError> {
    let writer = Arc::clone(shared);
    let write = move |group: Vec<Held>| {
        let shared = Arc::clone(&writer);
        async move {
            let now = SystemTime::now();
            let until = now.checked_add(shared.settings.lease).unwrap_or(now);
            each(group.len(), shared.store.renew_all(&group, until).await)
        }
    };
    shared
        .renewals
        .submit(held, write)
        .await
        .unwrap_or_else(|| Err(stopped()))
}

/// A group's answer, one per member: a store's error is each member's.
fn each(members: usize, written: Result<Vec<bool>, StoreError>) -> Vec<Result<bool, StoreError>> {
    match written {
        Ok(answers) if answers.len() == members => answers.into_iter().map(Ok).collect(),
        Ok(_) => vec![
            Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "the inbox's store answered a group with another count"
            ));
            members
        ],
        Err(error) => vec![Err(error); members],
    }
}

/// The writer of a group stopped without an answer.
fn stopped() -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        "the inbox's writer stopped before the write was done",
    )
}

/// How much of a lease a worker holds a delivery without a successful renewal before it stops
/// the handler: enough before the lease's end that the store's clock, a slow renewal and the
/// abort itself all fit.
pub(crate) const LAPSE_SHARE: f64 = 5.0 / 6.0;

/// What the dead letter says when the inbox's own database failed during an attempt: the
/// error itself goes to the log.
pub(crate) const STORE_FAILED: &str = "the inbox's database failed during the attempt";

/// The inbox's own database failed during an attempt run in its transaction (not the
/// handler's writes): logged, and kept with the delivery only as [`STORE_FAILED`].
#[derive(Debug)]
pub(crate) struct StoreFailed(pub(crate) String);

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl StoreFailed {
    /// `error`, as a handler's error.
    pub(crate) fn boxed(error: impl fmt::Display) -> BoxError {
        Box::new(Self(error.to_string()))
    }
}

impl fmt::Display for StoreFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreFailed {}

/// Where the `claims`-th claim starts the rotation of tenants: spread by the clock's
/// nanoseconds, so that the fleet's instances start at different tenants too.
fn rotation(claims: u64) -> u32 {
    let nanos = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    // Truncation is the point: any 32 bits of the mix will do.
    #[allow(clippy::cast_possible_truncation)]
    let claims = claims as u32;
    nanos.wrapping_mul(2_654_435_761).wrapping_add(claims)
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
