//! [`PostgresInbox`]: the inbox in PostgreSQL, shared by a fleet (feature `inbox-postgres`).
//! Workers of every instance take deliveries with `FOR UPDATE SKIP LOCKED`, which PostgreSQL
//! documents for queues: two never take one delivery, and none waits for another's lock.

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use tokio::sync::OnceCell;

use super::worker::{self, Handled};
use super::{
    BoxError, ClaimRequest, Commit, DeadLetter, Inbox, InboxDelivery, InboxStats, InboxStore,
    Retried, StoreError, StoreErrorKind, Workers, millis, sql,
};

/// The longest one operation may take: a paused or unreachable server is an error in time.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The table and its indexes, made once (instances that start together take turns).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS countersign_inbox (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    tenant TEXT,
    body BYTEA,
    signed_headers TEXT,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    due_at BIGINT NOT NULL,
    lease_owner TEXT,
    received_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS countersign_inbox_due ON countersign_inbox (state, due_at);
CREATE INDEX IF NOT EXISTS countersign_inbox_tenant ON countersign_inbox (tenant, state);
";

/// Each tenant's oldest due delivery before a second of any: a candidate's turn is its rank
/// within its tenant plus the tenant's deliveries on live leases, none past the tenant's
/// concurrency; then as many candidates as are not locked by another instance's claim. Each
/// lease is `{owner}:{attempt}`.
const CLAIM: &str = "
WITH busy AS (
    SELECT tenant, count(*) AS n FROM countersign_inbox
     WHERE state = 'leased' AND due_at > $3 GROUP BY tenant),
candidates AS (
    SELECT id, due_at, turn FROM (
        SELECT i.id, i.due_at,
               ROW_NUMBER() OVER (PARTITION BY i.tenant ORDER BY i.due_at, i.id)
                   + coalesce(b.n, 0) AS turn
          FROM countersign_inbox i
          LEFT JOIN busy b ON b.tenant IS NOT DISTINCT FROM i.tenant
         WHERE i.state IN ('pending', 'leased') AND i.due_at <= $3) ranked
     WHERE turn <= $6
     ORDER BY turn, due_at, id
     LIMIT $5),
locked AS (
    SELECT i.id FROM countersign_inbox i JOIN candidates c ON c.id = i.id
     WHERE i.state IN ('pending', 'leased') AND i.due_at <= $3
     ORDER BY c.turn, c.due_at, c.id
     LIMIT $4
     FOR UPDATE OF i SKIP LOCKED)
UPDATE countersign_inbox i
   SET state = 'leased', lease_owner = $1::TEXT || ':' || (i.attempts + 1), due_at = $2,
       attempts = i.attempts + 1
  FROM locked WHERE i.id = locked.id
RETURNING i.";

/// The inbox in PostgreSQL, through your pool: a fleet shares it. The table
/// (`countersign_inbox`, or [`PostgresInbox::with_table`]'s) is made with the first operation,
/// so an instance starts while the server is down (and spools, with a `Spool`, or answers
/// 503).
#[derive(Clone)]
pub struct PostgresInbox {
    pool: Pool,
    schema: std::sync::Arc<OnceCell<()>>,
    sql: std::sync::Arc<sql::Statements>,
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
            sql: std::sync::Arc::new(sql::Statements::new(
                sql::DEFAULT_TABLE,
                true,
                SCHEMA,
                CLAIM,
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
            sql: std::sync::Arc::new(sql::Statements::new(table, true, SCHEMA, CLAIM)),
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
        self.with(|client| async move {
            let changed = client.execute(which(&self.sql), params).await?;
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
            let client = self.pool.get().await.map_err(unavailable)?;
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
        let handler: worker::Handler = std::sync::Arc::new(move |delivery, lease| {
            let (store, handler) = (store.clone(), std::sync::Arc::clone(&handler));
            Box::pin(async move {
                let mut client = tokio::time::timeout(OPERATION_TIMEOUT, store.pool.get())
                    .await
                    .map_err(|_| "the inbox's database did not answer in time")??;
                let db = client.transaction().await?;
                handler(&db, &delivery).await?;
                let completed = tokio::time::timeout(
                    OPERATION_TIMEOUT,
                    db.execute(&store.sql.complete, &[&delivery.id, &lease]),
                )
                .await
                .map_err(|_| "the inbox's database did not answer in time")??;
                if completed == 0 {
                    return Ok(Handled::LostLease);
                }
                tokio::time::timeout(OPERATION_TIMEOUT, db.commit())
                    .await
                    .map_err(|_| "the inbox's database did not answer in time")??;
                Ok(Handled::Completed)
            })
        });
        worker::start(self.clone(), concurrency.max(1), handler)
    }
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
        self.with(|mut client| async move {
            let db = client.transaction().await?;
            let known = db
                .query_opt(&self.sql.known, &[&delivery.id])
                .await?
                .is_some();
            if known {
                return Ok(Commit::Duplicate);
            }
            let waiting: i64 = match &delivery.tenant {
                Some(tenant) => db.query_one(&self.sql.waiting, &[tenant]).await?,
                None => db.query_one(&self.sql.waiting_untenanted, &[]).await?,
            }
            .get(0);
            if waiting >= limit {
                return Ok(Commit::TenantFull);
            }
            let inserted = db
                .execute(
                    &self.sql.insert,
                    &[
                        &delivery.id,
                        &delivery.provider.as_str(),
                        &delivery.tenant,
                        &delivery.body.as_ref(),
                        &signed_headers,
                        &millis(delivery.received_at),
                        &millis(expires_at),
                    ],
                )
                .await?;
            db.commit().await?;
            // Another instance committed it between the look and the insert: a duplicate.
            Ok(if inserted == 1 {
                Commit::New
            } else {
                Commit::Duplicate
            })
        })
        .await
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
        self.with(|client| async move {
            client
                .execute(&self.sql.bury, &[&now, &max_attempts, &dead_until])
                .await?;
            let rows = client
                .query(
                    &format!("{}{}", self.sql.claim, sql::CLAIMED.replace(", ", ", i.")),
                    &[
                        &owner,
                        &lease_until,
                        &now,
                        &limit,
                        &candidates,
                        &concurrency,
                    ],
                )
                .await?;
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
                .query(&self.sql.dead_letters, &[&tenant, &limit])
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
                .execute(&self.sql.retry, &[&id, &tenant, &millis(now), &limit])
                .await?
                == 1
            {
                return Ok(Retried::Due);
            }
            let dead = client.query_opt(&self.sql.dead, &[&id, &tenant]).await?;
            Ok(if dead.is_some() {
                Retried::TenantFull
            } else {
                Retried::NotFound
            })
        })
        .await
    }

    async fn purge(&self, now: SystemTime) -> Result<u64, StoreError> {
        self.with(|client| async move { client.execute(&self.sql.purge, &[&millis(now)]).await })
            .await
    }

    async fn stats(&self) -> Result<InboxStats, StoreError> {
        self.with(|client| async move {
            let rows = client.query(&self.sql.stats, &[]).await?;
            Ok(sql::stats(
                rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))),
            ))
        })
        .await
    }
}
