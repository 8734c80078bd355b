//! [`PostgresInbox`]: the inbox in PostgreSQL, shared by a fleet (feature `inbox-postgres`).
//! Workers of every instance take deliveries with `FOR UPDATE SKIP LOCKED`, which PostgreSQL
//! documents for queues: two never take one delivery, and none waits for another's lock.

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use tokio::sync::OnceCell;

use super::worker::{self, Handled, StoreFailed};
use super::{
    BoxError, ClaimRequest, Commit, DeadLetter, Inbox, InboxDelivery, InboxStats, InboxStore,
    Retried, StoreError, StoreErrorKind, Workers, millis, sql,
};

/// The longest one operation may take: a paused or unreachable server is an error in time.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Each tenant's oldest due delivery before a second of any, at a cost that does not grow with
/// the backlog: the tenants with pending deliveries are found by a loose scan of the index
/// (one seek per tenant), each gives at most `$7` of its oldest due ones, and the leases that
/// lapsed are taken over with them. A candidate's turn is its rank within its tenant plus the
/// tenant's deliveries on live leases, none past the tenant's concurrency `$6`; among equal
/// turns the tenants take their places in a rotation that each claim starts elsewhere (`$8`),
/// so that a tenant whose backlog is older never goes before a newcomer for long; then as many
/// candidates as are not locked by another instance's claim. Each lease is `{owner}:{attempt}`.
const CLAIM: &str = "
WITH RECURSIVE tenants AS (
    (SELECT tenant FROM countersign_inbox
      WHERE state = 'pending' AND tenant IS NOT NULL ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT i.tenant FROM countersign_inbox i
             WHERE i.state = 'pending' AND i.tenant > t.tenant ORDER BY i.tenant LIMIT 1)
      FROM tenants t WHERE t.tenant IS NOT NULL
),
candidates AS (
    SELECT c.id, c.tenant, c.due_at FROM tenants t CROSS JOIN LATERAL (
        SELECT id, tenant, due_at FROM countersign_inbox
         WHERE state = 'pending' AND tenant = t.tenant AND due_at <= $3
         ORDER BY due_at, id LIMIT $7) c
    UNION ALL
    (SELECT id, tenant, due_at FROM countersign_inbox
      WHERE state = 'pending' AND tenant IS NULL AND due_at <= $3
      ORDER BY due_at, id LIMIT $7)
    UNION ALL
    SELECT id, tenant, due_at FROM countersign_inbox WHERE state = 'leased' AND due_at <= $3
),
busy AS (
    SELECT tenant, count(*) AS n FROM countersign_inbox
     WHERE state = 'leased' AND due_at > $3 GROUP BY tenant),
ranked AS (
    SELECT id, due_at, turn, spot FROM (
        SELECT id, due_at, turn, (place + $8) % max(place) OVER () AS spot FROM (
            SELECT c.id, c.due_at,
                   ROW_NUMBER() OVER (PARTITION BY c.tenant ORDER BY c.due_at, c.id)
                       + coalesce(b.n, 0) AS turn,
                   DENSE_RANK() OVER (ORDER BY c.tenant) AS place
              FROM candidates c
              LEFT JOIN busy b ON b.tenant IS NOT DISTINCT FROM c.tenant) numbered) placed
     WHERE turn <= $6
     ORDER BY turn, spot, due_at, id
     LIMIT $5),
locked AS (
    SELECT i.id FROM countersign_inbox i JOIN ranked c ON c.id = i.id
     WHERE i.state IN ('pending', 'leased') AND i.due_at <= $3
     ORDER BY c.turn, c.spot, c.due_at, c.id
     LIMIT $4
     FOR UPDATE OF i SKIP LOCKED)
UPDATE countersign_inbox i
   SET state = 'leased', lease_owner = $1::TEXT || ':' || (i.attempts + 1), due_at = $2,
       attempts = i.attempts + 1
  FROM locked WHERE i.id = locked.id
RETURNING i.";

/// A new delivery of tenant `$3`, due at once, unless its tenant has `$8` deliveries waiting
/// or its id is there: one statement, so one round trip and one commit. The count stops at the
/// limit, so only a tenant near its limit makes its own commits count that far. (Two commits
/// at once may both see room for one: the limit bounds a tenant's share, give or take the
/// requests in flight.)
const ADMIT: &str = "INSERT INTO countersign_inbox
    (id, provider, tenant, body, signed_headers, state, due_at, received_at, expires_at)
  SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BYTEA, $5::TEXT, 'pending', $6::BIGINT, $6::BIGINT,
         $7::BIGINT
   WHERE (SELECT count(*) FROM (SELECT 1 FROM countersign_inbox
           WHERE tenant = $3::TEXT AND state IN ('pending', 'leased') LIMIT $8::BIGINT) w)
         < $8::BIGINT
  ON CONFLICT (id) DO NOTHING";

/// [`ADMIT`] for a delivery of no tenant (`$3` null).
const ADMIT_UNTENANTED: &str = "INSERT INTO countersign_inbox
    (id, provider, tenant, body, signed_headers, state, due_at, received_at, expires_at)
  SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BYTEA, $5::TEXT, 'pending', $6::BIGINT, $6::BIGINT,
         $7::BIGINT
   WHERE (SELECT count(*) FROM (SELECT 1 FROM countersign_inbox
           WHERE tenant IS NULL AND state IN ('pending', 'leased') LIMIT $8::BIGINT) w)
         < $8::BIGINT
  ON CONFLICT (id) DO NOTHING";

/// [`ADMIT`] for an inbox with no limit per tenant: nothing to count.
const ADMIT_UNLIMITED: &str = "INSERT INTO countersign_inbox
    (id, provider, tenant, body, signed_headers, state, due_at, received_at, expires_at)
  VALUES ($1::TEXT, $2::TEXT, $3::TEXT, $4::BYTEA, $5::TEXT, 'pending', $6::BIGINT, $6::BIGINT,
          $7::BIGINT)
  ON CONFLICT (id) DO NOTHING";

/// The inbox in PostgreSQL, through your pool: a fleet shares it. The table
/// (`countersign_inbox`, or [`PostgresInbox::with_table`]'s) is made with the first operation,
/// so an instance starts while the server is down (and spools, with a `Spool`, or answers
/// 503).
#[derive(Clone)]
pub struct PostgresInbox {
    pool: Pool,
    schema: std::sync::Arc<OnceCell<()>>,
    sql: std::sync::Arc<sql::Statements>,
    /// [`ADMIT`], [`ADMIT_UNTENANTED`] and [`ADMIT_UNLIMITED`] over the table.
    admit: std::sync::Arc<[String; 3]>,
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
            admit: std::sync::Arc::new(admit(sql::DEFAULT_TABLE)),
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
            admit: std::sync::Arc::new(admit(table)),
            schema: std::sync::Arc::new(OnceCell::new()),
            ..self
        })
    }

    /// Runs the statement `which` picks with `params`: whether it changed one row.
    async fn change(
        &self,
        which: fn(&sql::Statements) -> &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<bool, StoreError> {
        self.with(|mut client| async move {
            let db = bookkeeping(&mut client).await?;
            let changed = db
                .execute(&db.prepare_cached(which(&self.sql)).await?, params)
                .await?;
            db.commit().await?;
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
            // (holding one each, they would leave it none).
            self.schema
                .get_or_try_init(|| async {
                    let mut client = self.pool.get().await.map_err(unavailable)?;
                    let db = client.transaction().await.map_err(unavailable)?;
                    db.execute("SELECT pg_advisory_xact_lock(7262071)", &[])
                        .await
                        .map_err(unavailable)?;
                    db.batch_execute(&self.sql.schema)
                        .await
                        .map_err(unavailable)?;
                    db.commit().await.map_err(unavailable)
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
    /// use countersign::inbox::{Inbox, PostgresInbox, Workers};
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
            self.clone(),
            concurrency.max(1),
            worker::in_transaction(handler),
        )
    }
}

/// A transaction for the inbox's bookkeeping (claims, leases, outcomes, purges), whose commit
/// does not wait for the disk (`synchronous_commit` off for it alone): a database crash may
/// forget its last moments, and then a delivery is taken or handled again, which a handler
/// bears anyway. A delivery's commit, and a [`Inbox::work_in_transaction`] handler's writes
/// with its "handled", wait for the disk.
async fn bookkeeping(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    let db = client.transaction().await?;
    db.batch_execute("SET LOCAL synchronous_commit TO OFF")
        .await?;
    Ok(db)
}

/// [`CLAIM`] with what it returns of each delivery.
fn claim() -> String {
    format!("{CLAIM}{}", sql::CLAIMED.replace(", ", ", i."))
}

/// [`ADMIT`], [`ADMIT_UNTENANTED`] and [`ADMIT_UNLIMITED`] over `table`.
fn admit(table: &str) -> [String; 3] {
    [ADMIT, ADMIT_UNTENANTED, ADMIT_UNLIMITED].map(|sql| sql::for_table(sql, table, true))
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

impl InboxStore for PostgresInbox {
    async fn commit(
        &self,
        delivery: &InboxDelivery,
        expires_at: SystemTime,
        tenant_limit: u64,
    ) -> Result<Commit, StoreError> {
        let signed_headers =
            serde_json::to_string(&delivery.signed_headers).map_err(unavailable)?;
        let limit = i64::try_from(tenant_limit).unwrap_or(i64::MAX);
        let (admit, limited) = match (&delivery.tenant, limit) {
            (_, i64::MAX) => (&self.admit[2], false),
            (Some(_), _) => (&self.admit[0], true),
            (None, _) => (&self.admit[1], true),
        };
        self.with(|client| async move {
            let at = millis(delivery.received_at);
            let expires = millis(expires_at);
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                &delivery.id,
                &delivery.provider.as_str(),
                &delivery.tenant,
                &delivery.body.as_ref(),
                &signed_headers,
                &at,
                &expires,
                &limit,
            ];
            let params = if limited { &params[..] } else { &params[..7] };
            let inserted = client
                .execute(&client.prepare_cached(admit).await?, params)
                .await?;
            if inserted == 1 {
                return Ok(Commit::New);
            }
            // Not inserted: its id was there, or its tenant had no room.
            let known = client
                .query_opt(
                    &client.prepare_cached(&self.sql.known).await?,
                    &[&delivery.id],
                )
                .await?
                .is_some();
            Ok(if known {
                Commit::Duplicate
            } else {
                Commit::TenantFull
            })
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
        // Candidates to spare for those other instances hold locked now.
        let candidates = limit.saturating_mul(4).max(16);
        let concurrency = i64::try_from(request.tenant_concurrency).unwrap_or(i64::MAX);
        let max_attempts = i64::from(request.max_attempts);
        let (now, lease_until) = (millis(request.now), millis(request.lease_until));
        let dead_until = millis(request.dead_until);
        let owner = request.owner;
        self.with(|mut client| async move {
            let db = bookkeeping(&mut client).await?;
            db.execute(
                &db.prepare_cached(&self.sql.bury).await?,
                &[&now, &max_attempts, &dead_until],
            )
            .await?;
            let rows = db
                .query(
                    &db.prepare_cached(&self.sql.claim).await?,
                    &[
                        &owner,
                        &lease_until,
                        &now,
                        &limit,
                        &candidates,
                        &concurrency,
                        &concurrency.min(candidates),
                        &i64::from(request.rotation),
                    ],
                )
                .await?;
            db.commit().await?;
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
        tenant_limit: u64,
    ) -> Result<Retried, StoreError> {
        let limit = i64::try_from(tenant_limit).unwrap_or(i64::MAX);
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
        self.with(|mut client| async move {
            let db = bookkeeping(&mut client).await?;
            let purged = db
                .execute(&db.prepare_cached(&self.sql.purge).await?, &[&millis(now)])
                .await?;
            db.commit().await?;
            Ok(purged)
        })
        .await
    }

    async fn stats(&self) -> Result<InboxStats, StoreError> {
        self.with(|client| async move {
            let rows = client
                .query(&client.prepare_cached(&self.sql.stats).await?, &[])
                .await?;
            Ok(sql::stats(
                rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))),
            ))
        })
        .await
    }
}
