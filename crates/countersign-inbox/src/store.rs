//! Where an inbox keeps its deliveries: what its workers call ([`WorkerStore`]) and what an
//! operator calls ([`OperatorStore`]).

use std::future::Future;
use std::time::SystemTime;

use countersign_core::replay::StoreError;

use crate::delivery::{
    ClaimRequest, Commit, DeadLetter, Held, InboxDelivery, InboxStats, LeaseOffer, Outcome, Retried,
};

/// What the request path and the workers ask of a store: commit, claim, renew, record the
/// outcome, forget. `SqliteInbox` (feature `sqlite`) and `PostgresInbox` (feature `postgres`)
/// are the two. Every time is the caller's. A `lease` is the `{owner}:{attempt}` a claim (or
/// a commit, [`commit_and_lease`](Self::commit_and_lease)) gave the delivery. A `tenant_limit`
/// of `None` counts nothing.
pub trait WorkerStore: Send + Sync + 'static {
    /// Commits `delivery` (due at once, remembered until `expires_at` once handled) unless its
    /// id is there, or its tenant has `tenant_limit` deliveries pending or leased (`None`:
    /// no limit, and nothing to count). The commit is durable when this returns.
    fn commit(
        &self,
        delivery: &InboxDelivery,
        expires_at: SystemTime,
        tenant_limit: Option<u64>,
    ) -> impl Future<Output = Result<Commit, StoreError>> + Send;
    /// Whether [`commit_and_lease`](Self::commit_and_lease) may lease. Read once when a pool
    /// of workers starts: only then does the pool offer its free workers' places to commits.
    /// This default says `false`; a store that overrides `commit_and_lease` says `true`.
    fn leases_on_commit(&self) -> bool {
        false
    }
    /// Commits `delivery` as [`commit`](Self::commit) does (the same duplicate check and
    /// tenant limit, first) and, in the same write, leases it for its first attempt to the
    /// free worker that made `offer`, when a claim would take it at once:
    ///
    /// - nothing in the whole store is due at `delivery.received_at` (no delivery of any
    ///   tenant pending and due, no lease lapsed): a backlog leaves every new delivery to the
    ///   claim, which serves the tenants in turn;
    /// - its tenant has fewer than `offer.tenant_concurrency` deliveries on live leases,
    ///   counting those this same write leases before it (a store that commits one delivery
    ///   per write has none).
    ///
    /// Leased, the delivery must be as a claim would have left it: its lease `offer.lease`,
    /// one attempt counted, due at `offer.lease_until` (the lease's end), so that renewals,
    /// outcomes, and a takeover once the lease lapses treat it as any other. Answer `true`
    /// only with [`Commit::New`] and only when leased; the caller then runs the attempt. A
    /// caller that cannot (its workers stopped, or this call failed and may have landed all
    /// the same) gives the lease back with [`fail`](Self::fail), due at once, which finds
    /// nothing when the delivery holds no such lease. This default leases nothing (`false`),
    /// and the delivery waits for a claim.
    fn commit_and_lease(
        &self,
        delivery: &InboxDelivery,
        expires_at: SystemTime,
        tenant_limit: Option<u64>,
        offer: LeaseOffer<'_>,
    ) -> impl Future<Output = Result<(Commit, bool), StoreError>> + Send {
        let _ = offer;
        async move {
            let commit = self.commit(delivery, expires_at, tenant_limit).await?;
            Ok((commit, false))
        }
    }
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
    /// Whether anything is due at `now` (a delivery pending and due, of any tenant, held back
    /// by its tenant's concurrency or not; or a lease that lapsed). Asked after a claim that
    /// took nothing while attempts of the pool are under way: `true` makes the end of each of
    /// them wake the workers to claim again (a tenant held back by its concurrency gets its
    /// turn); `false` lets them wait for a commit or the poll interval. A wrong `true` costs
    /// a claim per attempt's end; a wrong `false` makes a tenant held back wait for the poll.
    /// An error counts as `true`. This default says `true`.
    fn anything_due(
        &self,
        now: SystemTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = now;
        async { Ok(true) }
    }
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
    /// Records the outcomes of several attempts at once (the workers gather those that end
    /// while one write is under way): for each, in order, whether its lease was still its
    /// own, as [`complete`](Self::complete) and [`fail`](Self::fail) answer. On an error each
    /// outcome is submitted again, on its own, until its lease may have lapsed, so write all or
    /// none: the built-in stores use one transaction that does not wait for the disk; this
    /// default, not atomic, writes them one by one (a "handled" written twice by the same
    /// lease is still its own; a failure written twice is not, and answers `false`).
    fn record(
        &self,
        outcomes: &[(Held, Outcome)],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send {
        async move {
            let mut recorded = Vec::with_capacity(outcomes.len());
            for (held, outcome) in outcomes {
                recorded.push(match outcome {
                    Outcome::Handled => self.complete(&held.id, &held.lease).await?,
                    Outcome::Failed {
                        error,
                        retry_at,
                        dead_until,
                    } => {
                        self.fail(&held.id, &held.lease, error, *retry_at, *dead_until)
                            .await?
                    }
                });
            }
            Ok(recorded)
        }
    }
    /// Extends several leases to `lease_until` at once: for each, in order, whether it was
    /// still its delivery's, as [`renew`](Self::renew) answers. The built-in stores write
    /// them in one transaction that does not wait for the disk; this default, one by one.
    fn renew_all(
        &self,
        held: &[Held],
        lease_until: SystemTime,
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send {
        async move {
            let mut renewed = Vec::with_capacity(held.len());
            for held in held {
                renewed.push(self.renew(&held.id, &held.lease, lease_until).await?);
            }
            Ok(renewed)
        }
    }
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

/// What an operator asks of a store: the dead letters, and trying one again.
pub trait OperatorStore: Send + Sync + 'static {
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
        tenant_limit: Option<u64>,
    ) -> impl Future<Output = Result<Retried, StoreError>> + Send;
    /// For each of `ids`, in order, whether the inbox has it (pending, running, handled and
    /// remembered, or a dead letter): what reconciling with a provider's record looks up.
    fn known(&self, ids: &[String]) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;
    /// The latest `received_at` of the deliveries [`purge`](WorkerStore::purge) forgot (`None`:
    /// none yet): a delivery received after it, if ever committed, is still known. Keep it in
    /// the purge's own transaction.
    fn purged_up_to(&self) -> impl Future<Output = Result<Option<SystemTime>, StoreError>> + Send;
}

/// A store the [`Inbox`](crate::Inbox) runs on: what its workers call and what an operator
/// calls. Implemented for every type that is both.
pub trait InboxStore: WorkerStore + OperatorStore {}

impl<T: WorkerStore + OperatorStore> InboxStore for T {}
