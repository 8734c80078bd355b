//! [`PostgresInbox`]: the inbox in PostgreSQL, shared by a fleet (feature `postgres`).
//! Workers of every instance take deliveries with `FOR UPDATE SKIP LOCKED`, which PostgreSQL
//! documents for queues: two never take one delivery, and none waits for another's lock.

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use tokio::sync::OnceCell;

use countersign_core::replay::{StoreError, StoreErrorKind};

use crate::batch::Batcher;
use crate::delivery::{
    BoxError, ClaimRequest, Commit, DeadLetter, Held, InboxDelivery, InboxStats, LeaseOffer,
    Outcome, Retried, millis,
};
use crate::inbox::Inbox;
use crate::sql;
use crate::store::{OperatorStore, WorkerStore};
use crate::worker::{self, Handled, StoreFailed, Workers};

#[cfg(feature = "postgres-url")]
pub(crate) mod connect;
mod group;
mod statements;

use statements::{Own, claim};

/// The longest one operation may take: a paused or unreachable server is an error in time.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The inbox in PostgreSQL, through your pool: a fleet shares it. The table
/// (`countersign_inbox`, or [`PostgresInbox::with_table`]'s) is made with the first operation,
/// so an instance starts while the server is down (and spools, with a `Spool`, or answers
/// 503).
#[derive(Clone)]
pub struct PostgresInbox {
    pool: Pool,
    schema: std::sync::Arc<OnceCell<()>>,
    sql: std::sync::Arc<sql::Statements>,
    /// The statements PostgreSQL's inbox has of its own, over the table.
    own: std::sync::Arc<Own>,
    /// The commits waiting for the next group ([`group`]).
    commits: std::sync::Arc<Batcher<sql::Pending, group::Answer>>,
}

impl fmt::Debug for PostgresInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresInbox").finish_non_exhaustive()
    }
}

fn unavailable(error: impl fmt::Display) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, error.to_string())
}

impl PostgresInbox {
    /// The inbox in the database `pool` connects to, in the table `countersign_inbox`.
    #[must_use]
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            schema: std::sync::Arc::new(OnceCell::new()),
            sql: std::sync::Arc::new(sql::Statements::new(sql::DEFAULT_TABLE, true, &claim())),
            own: std::sync::Arc::new(Own::over(sql::DEFAULT_TABLE)),
            commits: std::sync::Arc::new(Batcher::new(
                group::MOST,
                sql::MOST_GROUP_BYTES,
                sql::Pending::weight,
            )),
        }
    }

    /// The inbox in the table `table` (made with the first operation) rather than
    /// `countersign_inbox`: each app whose deliveries share one database needs its own, since
    /// an inbox's workers take whatever its table holds.
    ///
    /// # Errors
    /// When `table` is not 1 to 48 of `a-z`, `0-9` and `_`, not starting with a digit.
    pub fn with_table(self, table: &str) -> Result<Self, countersign_core::ConfigError> {
        let table = sql::table_name(table)?;
        Ok(Self {
            sql: std::sync::Arc::new(sql::Statements::new(table, true, &claim())),
            own: std::sync::Arc::new(Own::over(table)),
            // Another table's commits never wait in this one's group.
            commits: std::sync::Arc::new(Batcher::new(
                group::MOST,
                sql::MOST_GROUP_BYTES,
                sql::Pending::weight,
            )),
            schema: std::sync::Arc::new(OnceCell::new()),
            ..self
        })
    }

    /// Commits `pending` in a statement of its own: its answer, and whether it went in leased
    /// to the lease it offered.
    async fn commit_alone(&self, pending: &sql::Pending) -> Result<(Commit, bool), StoreError> {
        let delivery = &pending.delivery;
        let limit = pending.limit();
        let (lease, lease_until, concurrency) = pending
            .lease
            .as_ref()
            .map_or((None, 0, 0), |(lease, until, concurrency)| {
                (Some(lease.as_str()), *until, *concurrency)
            });
        let (admit, count) = match (&delivery.tenant, limit, lease) {
            (Some(_), _, Some(_)) => (&self.own.admit.leased, 11),
            (None, _, Some(_)) => (&self.own.admit.leased_untenanted, 11),
            (_, i64::MAX, None) => (&self.own.admit.unlimited, 7),
            (Some(_), _, None) => (&self.own.admit.tenanted, 8),
            (None, _, None) => (&self.own.admit.untenanted, 8),
        };
        self.with(|client| async move {
            let at = millis(delivery.received_at);
            let expires = millis(pending.expires_at);
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
                &delivery.id,
                &delivery.provider.as_str(),
                &delivery.tenant,
                &delivery.body.as_ref(),
                &pending.signed_headers,
                &at,
                &expires,
                &limit,
                &lease,
                &lease_until,
                &concurrency,
            ];
            let inserted = indexed(&client, admit, &params[..count]).await?;
            if let Some(row) = inserted.first() {
                // The leased admit answers the state; the others insert pending.
                let leased = count == 11 && row.get::<_, &str>(1) == "leased";
                return Ok((Commit::New, leased));
            }
            // Not inserted: its id was there, or its tenant had no room.
            let known = !indexed(&client, &self.sql.known, &[&delivery.id])
                .await?
                .is_empty();
            Ok((
                if known {
                    Commit::Duplicate
                } else {
                    Commit::TenantFull
                },
                false,
            ))
        })
        .await
    }

    /// `pending` in the next group of commits.
    async fn submit(&self, pending: sql::Pending) -> group::Answer {
        let store = self.clone();
        let write = move |group| group::write(store.clone(), group);
        self.commits
            .submit(pending, write)
            .await
            .unwrap_or_else(|| Err(unavailable("the inbox's committer stopped")))
    }

    /// Runs the statement `which` picks with `params`: whether it changed one row.
    async fn change(
        &self,
        which: fn(&sql::Statements) -> &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<bool, StoreError> {
        self.with(|client| async move {
            let statement = client.prepare_cached(which(&self.sql)).await?;
            let changed =
                in_one_trip(&client, BOOKKEEPING, client.execute(&statement, params)).await?;
            Ok(changed == 1)
        })
        .await
    }

    /// A connection, the schema made first; the whole of `f` bounded in time.
    async fn with<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let operation = async {
            // The schema first, on a connection of its own that goes back before the
            // operation takes one: many requests at a cold start wait for it holding none
            // (holding one each, they would leave it none). It is made in a task of its own,
            // which an operation that runs out of time does not cancel: on a large table an
            // index takes longer to build than an operation may wait, and a making cancelled
            // by each operation in turn would be rolled back every time.
            self.schema
                .get_or_try_init(|| {
                    let (pool, schema) = (self.pool.clone(), std::sync::Arc::clone(&self.sql));
                    let made = tokio::spawn(async move {
                        let mut client = pool.get().await.map_err(unavailable)?;
                        let db = client.transaction().await.map_err(unavailable)?;
                        db.execute("SELECT pg_advisory_xact_lock(7262071)", &[])
                            .await
                            .map_err(unavailable)?;
                        db.batch_execute(&schema.schema)
                            .await
                            .map_err(unavailable)?;
                        db.commit().await.map_err(unavailable)
                    });
                    async move { made.await.map_err(unavailable)? }
                })
                .await?;
            let client = self.pool.get().await.map_err(unavailable)?;
            f(client).await.map_err(unavailable)
        };
        tokio::time::timeout(OPERATION_TIMEOUT, operation)
            .await
            .map_err(|_| {
                StoreError::new(
                    StoreErrorKind::Timeout,
                    "the inbox's database did not answer in time",
                )
            })?
    }
}

/// What a handler run by [`Inbox::work_in_transaction`] returns: its writes, borrowing the
/// transaction and the delivery.
pub type TransactionFuture<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

impl Inbox<PostgresInbox> {
    /// Like [`Inbox::work`], with a handler that writes in the inbox's own transaction (on a
    /// connection of the inbox's pool): its writes and the delivery's "handled" commit
    /// together, or not at all (when it fails, or when its lease was lost meanwhile), so its
    /// effects happen exactly once. Keep your tables in the inbox's database.
    ///
    /// ```no_run
    /// use countersign_inbox::{Inbox, PostgresInbox, Workers};
    ///
    /// fn start(inbox: &Inbox<PostgresInbox>) -> Workers {
    ///     inbox.work_in_transaction(4, |db, delivery| {
    ///         Box::pin(async move {
    ///             db.execute(
    ///                 "INSERT INTO events (delivery_id, body) VALUES ($1, $2)",
    ///                 &[&delivery.id, &delivery.body.as_ref()],
    ///             )
    ///             .await?;
    ///             Ok(())
    ///         })
    ///     })
    /// }
    /// ```
    #[must_use = "the workers stop when this is dropped"]
    pub fn work_in_transaction<H>(&self, concurrency: usize, handler: H) -> Workers
    where
        H: for<'a> Fn(
                &'a tokio_postgres::Transaction<'a>,
                &'a InboxDelivery,
            ) -> TransactionFuture<'a>
            + Send
            + Sync
            + 'static,
    {
        let handler = std::sync::Arc::new(handler);
        let store = self.inner.store.clone();
        let handler: worker::Run = std::sync::Arc::new(move |delivery, lease| {
            let (store, handler) = (store.clone(), std::sync::Arc::clone(&handler));
            Box::pin(async move {
                let late = |_| StoreFailed::boxed("the inbox's database did not answer in time");
                let mut client = tokio::time::timeout(OPERATION_TIMEOUT, store.pool.get())
                    .await
                    .map_err(late)?
                    .map_err(StoreFailed::boxed)?;
                let db = client.transaction().await.map_err(StoreFailed::boxed)?;
                handler(&db, &delivery).await?;
                let completed = tokio::time::timeout(OPERATION_TIMEOUT, async {
                    let complete = db.prepare_cached(&store.sql.complete).await?;
                    db.execute(&complete, &[&delivery.id, &lease]).await
                })
                .await
                .map_err(late)?
                .map_err(StoreFailed::boxed)?;
                if completed == 0 {
                    return Ok(Handled::LostLease);
                }
                tokio::time::timeout(OPERATION_TIMEOUT, db.commit())
                    .await
                    .map_err(late)?
                    .map_err(StoreFailed::boxed)?;
                Ok(Handled::Completed)
            })
        });
        worker::start(
            std::sync::Arc::clone(&self.inner),
            concurrency.max(1),
            worker::in_transaction(handler),
        )
    }
}

/// What a transaction of the inbox's bookkeeping (claims, leases, outcomes, purges) sets, sent
/// with its first statement ([`in_one_trip`]). Its commit does not wait for the disk
/// (`synchronous_commit` off for it alone): a database crash may forget its last moments, and
/// then a delivery is taken or handled again, which a handler bears anyway. A delivery's
/// commit, and a [`Inbox::work_in_transaction`] handler's writes with its "handled", wait for
/// the disk. Its statements read the indexes as [`INDEXED`] says.
const BOOKKEEPING: &str = "SET LOCAL synchronous_commit TO OFF; SET LOCAL enable_seqscan TO off; \
    SET LOCAL enable_bitmapscan TO off";

/// [`BOOKKEEPING`] for the outcomes and renewals, which find their rows by id alone: each is
/// planned once per connection (`plan_cache_mode`). Left to choose, PostgreSQL planned them
/// anew at every run of one row (154 µs of planning for 107 µs of work).
const BY_ID: &str = "SET LOCAL synchronous_commit TO OFF; SET LOCAL enable_seqscan TO off; \
    SET LOCAL enable_bitmapscan TO off; SET LOCAL plan_cache_mode TO force_generic_plan";

/// What a delivery's commit sets: its statements are planned on the indexes (`enable_seqscan`
/// off for it alone), and read them entry by entry (`enable_bitmapscan` off).
///
/// - Each statement is prepared once per connection, and after a few runs PostgreSQL keeps
///   one generic plan for it, made with the table's size at that moment. Made on a new table,
///   plans that read the whole table looked cheapest, and were kept while the table grew:
///   every group commit read every delivery ever kept. With sequential scans off, every
///   lookup by id, tenant or state goes through an index, whatever the statistics say.
/// - Each claim and outcome writes a new version of its delivery's row, and the old
///   version's index entries stay until a vacuum. A scan entry by entry marks those it finds
///   dead, once, and later scans skip them; a bitmap scan never does, and visits them all
///   again. The claim's count of live leases read every version leased within the lease's
///   length (11,267 entries and 2,873 pages, 11 ms of a 13 ms claim, after 6 s of
///   `scripts/bench-e2e`'s load); read entry by entry, the next claims read none of them
///   (1 ms). An entry is marked only once its version is dead to every transaction: while
///   one stays open (a slow `work_in_transaction` handler, an operator's session), nothing
///   is marked, and claims read those versions again, as vacuum cannot remove them either.
const INDEXED: &str = "SET LOCAL enable_seqscan TO off; SET LOCAL enable_bitmapscan TO off";

/// `first`, the first statement of transaction `db`, sent in the same round trip as the
/// settings `set` (each request is sent when first polled, and these are polled in order).
async fn settled<T>(
    db: &deadpool_postgres::Transaction<'_>,
    set: &str,
    first: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, tokio_postgres::Error> {
    let ((), answer) = tokio::try_join!(biased; db.batch_execute(set), first)?;
    Ok(answer)
}

/// `statements` in a transaction of their own, in one round trip: `BEGIN` with the settings
/// `set`, the statements, and `COMMIT` are all written to the connection before any answer
/// is awaited (tokio-postgres writes a request when its future is first polled, and the
/// join polls these three in order in its first poll), so a transaction costs one wait for
/// the server rather than three. `statements` must send all it runs when first polled
/// (prepare its statements before), and each of them must stand alone: one refused before it
/// was sent (a parameter of the wrong type) leaves those sent before it to commit. When one
/// fails in the server, PostgreSQL ends the transaction at the `COMMIT` with a rollback. The
/// answer is the statements' error first, then `BEGIN`'s, then `COMMIT`'s: all three are
/// awaited whatever the others answer, so no `COMMIT` is left unsent.
///
/// Once polled, the whole transaction is on its way: dropping the future (a timeout) leaves
/// neither a connection inside a transaction nor a half-written one, but the transaction may
/// still commit. So a timeout means "not known", as a `COMMIT` whose answer was lost always
/// did: a commit's sender spools or is answered 503 (and its retry is found a duplicate), a
/// lease offered is given back, and an outcome or a renewal that landed is what its worker
/// meant anyway. The connection goes back to the pool at once; the next operation on it waits
/// behind what is still running there. A claim, whose leases must not land unknown, commits
/// in a second round trip instead ([`Claiming`]).
async fn in_one_trip<T>(
    client: &tokio_postgres::Client,
    set: &str,
    statements: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, tokio_postgres::Error> {
    let begin = format!("BEGIN; {set}");
    let (begun, answer, committed) = tokio::join!(
        biased;
        client.batch_execute(&begin),
        statements,
        client.batch_execute("COMMIT"),
    );
    let answer = answer?;
    begun?;
    committed?;
    Ok(answer)
}

/// A claim's connection while its transaction is open: `BEGIN`, the settings and the
/// statements go in one round trip, and `COMMIT` in a second once they have answered. Dropped
/// before that (the claim cut off by its timeout), the connection is taken out of the pool and
/// closed, and PostgreSQL rolls the claim back: unless cut off while its `COMMIT` was already
/// on its way, no delivery is leased to a claim whose caller stopped waiting, to wait out a
/// lease nobody holds and lose an attempt (enough of those, on a database slow for long, would
/// bury deliveries that never ran).
///
/// PostgreSQL notices the closed connection only once the statement under way ends: blocked
/// on a lock (an `ALTER TABLE`, a `REINDEX`), it would wait, and each claim cut off after it
/// would leave another connection waiting beside it. So the server gives up on each of a
/// claim's statements when its caller does, after [`OPERATION_TIMEOUT`] (`statement_timeout`).
struct Claiming {
    connection: Option<deadpool_postgres::Object>,
    /// Set once the transaction has ended, committed or rolled back.
    ended: std::sync::atomic::AtomicBool,
}

impl Claiming {
    /// A claim's transaction, to open on `connection`.
    fn on(connection: deadpool_postgres::Object) -> Self {
        Self {
            connection: Some(connection),
            ended: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The connection.
    fn client(&self) -> &tokio_postgres::Client {
        self.connection
            .as_deref()
            .map(std::ops::Deref::deref)
            .expect("a claim's connection is there until it is dropped")
    }

    /// `statements` in a transaction with the settings `set` (as [`in_one_trip`] sends them)
    /// and the operation's `statement_timeout`, committed once they have answered; rolled
    /// back when one failed.
    async fn run<T>(
        &self,
        set: &str,
        statements: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, tokio_postgres::Error> {
        let client = self.client();
        let begin = format!(
            "BEGIN; {set}; SET LOCAL statement_timeout TO {}",
            OPERATION_TIMEOUT.as_millis()
        );
        let (begun, answer) = tokio::join!(biased; client.batch_execute(&begin), statements);
        let end = if answer.is_ok() && begun.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let ended = client.batch_execute(end).await;
        if ended.is_ok() {
            // The connection goes back to the pool, outside any transaction.
            self.ended.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let answer = answer?;
        begun?;
        ended?;
        Ok(answer)
    }
}

impl Drop for Claiming {
    fn drop(&mut self) {
        if self.ended.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if let Some(connection) = self.connection.take() {
            // Out of the pool, and closed as it drops: the server rolls back what was open.
            drop(deadpool_postgres::Object::take(connection));
        }
    }
}

/// One prepared statement, run with `params` in [`in_one_trip`] with [`INDEXED`]: its rows.
async fn indexed(
    client: &deadpool_postgres::Client,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(statement).await?;
    in_one_trip(client, INDEXED, client.query(&statement, params)).await
}

/// A claimed row ([`sql::CLAIMED`]).
fn delivery(row: &tokio_postgres::Row) -> InboxDelivery {
    sql::delivery((
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
    ))
}

/// The ids and leases of deliveries held, as two arrays for one statement.
#[derive(Default)]
struct Lists<'a> {
    ids: Vec<&'a str>,
    leases: Vec<&'a str>,
}

impl<'a> Lists<'a> {
    fn push(&mut self, held: &'a Held) {
        self.ids.push(&held.id);
        self.leases.push(&held.lease);
    }
}

/// For each of `held`, whether a statement changed it: whether `(id, lease)` is among the
/// `rows` it returned.
fn changed<'a>(held: impl Iterator<Item = &'a Held>, rows: &[tokio_postgres::Row]) -> Vec<bool> {
    let rows: std::collections::HashSet<(&str, &str)> =
        rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    held.map(|held| rows.contains(&(held.id.as_str(), held.lease.as_str())))
        .collect()
}

impl WorkerStore for PostgresInbox {
    async fn commit(
        &self,
        delivery: &InboxDelivery,
        expires_at: SystemTime,
        tenant_limit: Option<u64>,
    ) -> Result<Commit, StoreError> {
        let pending = sql::Pending::new(delivery, expires_at, tenant_limit).map_err(unavailable)?;
        Ok(self.submit(pending).await?.0)
    }

    fn leases_on_commit(&self) -> bool {
        true
    }

    async fn commit_and_lease(
        &self,
        delivery: &InboxDelivery,
        expires_at: SystemTime,
        tenant_limit: Option<u64>,
        offer: LeaseOffer<'_>,
    ) -> Result<(Commit, bool), StoreError> {
        let pending = sql::Pending::new(delivery, expires_at, tenant_limit).map_err(unavailable)?;
        self.submit(pending.offering(offer)).await
    }

    async fn anything_due(&self, now: SystemTime) -> Result<bool, StoreError> {
        let now = millis(now);
        self.with(|client| async move {
            Ok(!indexed(&client, &self.own.due, &[&now]).await?.is_empty())
        })
        .await
    }

    async fn set_aside(
        &self,
        delivery: &InboxDelivery,
        note: &str,
        dead_until: SystemTime,
    ) -> Result<Commit, StoreError> {
        let signed_headers =
            serde_json::to_string(&delivery.signed_headers).map_err(unavailable)?;
        let (at, until) = (millis(delivery.received_at), millis(dead_until));
        let inserted = self
            .with(|client| async move {
                client
                    .execute(
                        &client.prepare_cached(&self.sql.set_aside).await?,
                        &[
                            &delivery.id,
                            &delivery.provider.as_str(),
                            &delivery.tenant,
                            &delivery.body.as_ref(),
                            &signed_headers,
                            &at,
                            &until,
                            &note,
                        ],
                    )
                    .await
            })
            .await?;
        Ok(if inserted == 1 {
            Commit::New
        } else {
            Commit::Duplicate
        })
    }

    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<InboxDelivery>, StoreError> {
        let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
        // Candidates to spare for those another instance's claim holds locked now: half as
        // many again. Each costs the claim a row read and ranked, so more made every claim
        // slower (4x: 7 ms for 64 against 2.5 ms). A claim that comes back short because of
        // another's is followed by the next at once; one that comes back empty waits for the
        // next commit, the end of one of this instance's attempts, or the poll interval.
        let candidates = limit.saturating_add(limit / 2).max(16);
        let concurrency = i64::try_from(request.tenant_concurrency).unwrap_or(i64::MAX);
        let max_attempts = i64::from(request.max_attempts);
        let (now, lease_until) = (millis(request.now), millis(request.lease_until));
        let dead_until = millis(request.dead_until);
        let owner = request.owner;
        self.with(|client| async move {
            let (bury, claim) = (
                client.prepare_cached(&self.sql.bury).await?,
                client.prepare_cached(&self.sql.claim).await?,
            );
            let claiming = Claiming::on(client);
            let client = claiming.client();
            let rotation = i64::from(request.rotation);
            let claim_params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                &owner,
                &lease_until,
                &now,
                &limit,
                &candidates,
                &concurrency,
                &concurrency.min(candidates),
                &rotation,
            ];
            // The lapsed leases on their last attempt buried first, then the claim: one
            // round trip.
            let bury_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&now, &max_attempts, &dead_until];
            let statements = async {
                tokio::try_join!(
                    biased;
                    client.execute(&bury, &bury_params),
                    client.query(&claim, &claim_params),
                )
            };
            let (_, rows) = claiming.run(BOOKKEEPING, statements).await?;
            Ok(rows.iter().map(delivery).collect())
        })
        .await
    }

    async fn renew(&self, id: &str, lease: &str, until: SystemTime) -> Result<bool, StoreError> {
        self.change(|sql| &sql.renew, &[&id, &lease, &millis(until)])
            .await
    }

    async fn complete(&self, id: &str, lease: &str) -> Result<bool, StoreError> {
        self.change(|sql| &sql.complete, &[&id, &lease]).await
    }

    async fn fail(
        &self,
        id: &str,
        lease: &str,
        error: &str,
        retry_at: Option<SystemTime>,
        dead_until: SystemTime,
    ) -> Result<bool, StoreError> {
        let (retry_at, dead_until) = (retry_at.map(millis), millis(dead_until));
        self.change(
            |sql| &sql.fail,
            &[&id, &lease, &error, &retry_at, &dead_until],
        )
        .await
    }

    async fn record(&self, outcomes: &[(Held, Outcome)]) -> Result<Vec<bool>, StoreError> {
        let (mut handled, mut failed) = (Lists::default(), Lists::default());
        let (mut errors, mut retries, mut dead) = (Vec::new(), Vec::new(), Vec::new());
        for (held, outcome) in outcomes {
            match outcome {
                Outcome::Handled => handled.push(held),
                Outcome::Failed {
                    error,
                    retry_at,
                    dead_until,
                } => {
                    failed.push(held);
                    errors.push(error.as_str());
                    retries.push(retry_at.map(millis));
                    dead.push(millis(*dead_until));
                }
            }
        }
        let recorded = self
            .with(|client| async move {
                let (complete, fail) = (
                    client.prepare_cached(&self.own.complete_all).await?,
                    client.prepare_cached(&self.own.fail_all).await?,
                );
                let fail_params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                    [&failed.ids, &failed.leases, &errors, &retries, &dead];
                let complete_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                    [&handled.ids, &handled.leases];
                // Each kind there is, in one round trip.
                let db: &tokio_postgres::Client = &client;
                let each = |statement, params, none| async move {
                    if none {
                        Ok(Vec::new())
                    } else {
                        db.query(statement, params).await
                    }
                };
                let (mut recorded, failed) = in_one_trip(db, BY_ID, async {
                    tokio::try_join!(
                        biased;
                        each(&complete, &complete_params[..], handled.ids.is_empty()),
                        each(&fail, &fail_params[..], failed.ids.is_empty()),
                    )
                })
                .await?;
                recorded.extend(failed);
                Ok(recorded)
            })
            .await?;
        Ok(changed(outcomes.iter().map(|(held, _)| held), &recorded))
    }

    async fn renew_all(
        &self,
        held: &[Held],
        lease_until: SystemTime,
    ) -> Result<Vec<bool>, StoreError> {
        let mut leases = Lists::default();
        held.iter().for_each(|held| leases.push(held));
        let until = millis(lease_until);
        let renewed = self
            .with(|client| async move {
                let statement = client.prepare_cached(&self.own.renew_all).await?;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&leases.ids, &leases.leases, &until];
                in_one_trip(&client, BY_ID, client.query(&statement, &params)).await
            })
            .await?;
        Ok(changed(held.iter(), &renewed))
    }

    async fn crowded(&self, threshold: u64) -> Result<Vec<Option<String>>, StoreError> {
        let threshold = i64::try_from(threshold).unwrap_or(i64::MAX);
        self.with(|client| async move {
            let rows = client
                .query(
                    &client.prepare_cached(&self.sql.crowded).await?,
                    &[&threshold],
                )
                .await?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
        .await
    }

    async fn purge(&self, now: SystemTime) -> Result<u64, StoreError> {
        let now = millis(now);
        let mut forgotten = 0;
        loop {
            // A batch and its mark in one transaction of their own.
            let (purged, more) = self
                .with(|mut client| async move {
                    let db = client.transaction().await?;
                    let purgeable = db.prepare_cached(&self.sql.purgeable).await?;
                    let batch = sql::PURGE_BATCH;
                    let candidates =
                        settled(&db, BOOKKEEPING, db.query(&purgeable, &[&now, &batch]))
                            .await?
                            .iter()
                            .map(|row| (row.get(0), row.get(1)))
                            .collect();
                    let (ids, more) = sql::purge_batch(candidates);
                    let purge = db.prepare_cached(&self.sql.purge).await?;
                    let rows = db.query(&purge, &[&ids, &now]).await?;
                    if let Some(up_to) = rows.iter().map(|row| row.get::<_, i64>(0)).max() {
                        let mark = db.prepare_cached(&self.sql.mark_purged).await?;
                        db.execute(&mark, &[&up_to]).await?;
                    }
                    db.commit().await?;
                    Ok((rows.len(), more))
                })
                .await?;
            forgotten += purged as u64;
            if purged == 0 || !more {
                return Ok(forgotten);
            }
        }
    }

    async fn stats(&self) -> Result<InboxStats, StoreError> {
        self.with(|client| async move {
            let rows = indexed(&client, &self.sql.stats, &[]).await?;
            Ok(sql::stats(
                rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))),
            ))
        })
        .await
    }
}

impl OperatorStore for PostgresInbox {
    async fn purged_up_to(&self) -> Result<Option<SystemTime>, StoreError> {
        self.with(|client| async move {
            let row = client
                .query_opt(&client.prepare_cached(&self.sql.purged_up_to).await?, &[])
                .await?;
            Ok(row.map(|row| crate::delivery::from_millis(row.get::<_, i64>(0))))
        })
        .await
    }

    async fn known(&self, ids: &[String]) -> Result<Vec<bool>, StoreError> {
        self.with(|client| async move {
            let statement = client.prepare_cached(&self.sql.known).await?;
            let mut known = Vec::with_capacity(ids.len());
            for id in ids {
                known.push(client.query_opt(&statement, &[id]).await?.is_some());
            }
            Ok(known)
        })
        .await
    }

    async fn dead_letters(
        &self,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|client| async move {
            let rows = client
                .query(
                    &client.prepare_cached(&self.sql.dead_letters).await?,
                    &[&tenant, &limit],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| {
                    sql::dead_letter((
                        row.get(0),
                        row.get(1),
                        row.get(2),
                        row.get(3),
                        row.get(4),
                        row.get(5),
                    ))
                })
                .collect())
        })
        .await
    }

    async fn retry(
        &self,
        tenant: Option<&str>,
        id: &str,
        now: SystemTime,
        tenant_limit: Option<u64>,
    ) -> Result<Retried, StoreError> {
        let limit = tenant_limit.map_or(i64::MAX, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
        self.with(|client| async move {
            if client
                .execute(
                    &client.prepare_cached(&self.sql.retry).await?,
                    &[&id, &tenant, &millis(now), &limit],
                )
                .await?
                == 1
            {
                return Ok(Retried::Due);
            }
            let dead = client
                .query_opt(
                    &client.prepare_cached(&self.sql.dead).await?,
                    &[&id, &tenant],
                )
                .await?;
            Ok(if dead.is_some() {
                Retried::TenantFull
            } else {
                Retried::NotFound
            })
        })
        .await
    }
}
