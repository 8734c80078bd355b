//! [`PostgresInbox`]: the inbox in PostgreSQL, shared by a fleet (feature `inbox-postgres`).
//! Workers of every instance take deliveries with `FOR UPDATE SKIP LOCKED`, which PostgreSQL
//! documents for queues: two never take one delivery, and none waits for another's lock.

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use tokio::sync::OnceCell;

use super::{
    ClaimRequest, Commit, DeadLetter, InboxDelivery, InboxStats, InboxStore, Provider, StoreError,
    StoreErrorKind, from_millis, millis,
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
    attempts INTEGER NOT NULL DEFAULT 0,
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
RETURNING i.id, i.provider, i.tenant, i.body, i.signed_headers, i.attempts, i.received_at";

/// A delivery whose worker died on its last attempt is a dead letter, not taken again.
const BURY: &str = "
UPDATE countersign_inbox
   SET state = 'dead', lease_owner = NULL, expires_at = $3,
       last_error = 'its worker stopped during the last attempt (the lease lapsed)'
 WHERE state = 'leased' AND due_at <= $1 AND attempts >= $2";

/// The inbox in PostgreSQL, through your pool: a fleet shares it. The table
/// (`countersign_inbox`) is made with the first operation, so an instance starts (and answers
/// 503) while the server is down.
#[derive(Clone)]
pub struct PostgresInbox {
    pool: Pool,
    schema: std::sync::Arc<OnceCell<()>>,
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
    /// The inbox in the database `pool` connects to.
    #[must_use]
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            schema: std::sync::Arc::new(OnceCell::new()),
        }
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
                    db.batch_execute(SCHEMA).await.map_err(unavailable)?;
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

fn delivery(row: &tokio_postgres::Row) -> InboxDelivery {
    let provider: String = row.get(1);
    let signed_headers: Option<String> = row.get(4);
    InboxDelivery {
        id: row.get(0),
        provider: Provider::from_name(&provider).unwrap_or(Provider::Contentstack),
        tenant: row.get(2),
        body: row.get::<_, Option<Vec<u8>>>(3).unwrap_or_default().into(),
        signed_headers: signed_headers
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
        attempt: u32::try_from(row.get::<_, i32>(5)).unwrap_or(0),
        received_at: from_millis(row.get(6)),
    }
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
                .query_opt("SELECT 1 FROM countersign_inbox WHERE id = $1", &[&delivery.id])
                .await?
                .is_some();
            if known {
                return Ok(Commit::Duplicate);
            }
            // `tenant = $1` (not `IS NOT DISTINCT FROM`, which no index serves).
            let waiting: i64 = match &delivery.tenant {
                Some(tenant) => {
                    db.query_one(
                        "SELECT count(*) FROM countersign_inbox
                          WHERE tenant = $1 AND state IN ('pending', 'leased')",
                        &[tenant],
                    )
                    .await?
                }
                None => {
                    db.query_one(
                        "SELECT count(*) FROM countersign_inbox
                          WHERE tenant IS NULL AND state IN ('pending', 'leased')",
                        &[],
                    )
                    .await?
                }
            }
            .get(0);
            if waiting >= limit {
                return Ok(Commit::TenantFull);
            }
            let received = millis(delivery.received_at);
            let inserted = db
                .execute(
                    "INSERT INTO countersign_inbox
                         (id, provider, tenant, body, signed_headers, state, due_at, received_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $7)
                     ON CONFLICT (id) DO NOTHING",
                    &[
                        &delivery.id,
                        &delivery.provider.as_str(),
                        &delivery.tenant,
                        &delivery.body.as_ref(),
                        &signed_headers,
                        &received,
                        &millis(expires_at),
                    ],
                )
                .await?;
            db.commit().await?;
            // Another instance committed it between the look and the insert: a duplicate.
            Ok(if inserted == 1 { Commit::New } else { Commit::Duplicate })
        })
        .await
    }

    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<InboxDelivery>, StoreError> {
        let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
        // Candidates to spare for those other instances hold locked now.
        let candidates = limit.saturating_mul(4).max(16);
        let concurrency = i64::try_from(request.tenant_concurrency).unwrap_or(i64::MAX);
        let max_attempts = i32::try_from(request.max_attempts).unwrap_or(i32::MAX);
        let (now, lease_until) = (millis(request.now), millis(request.lease_until));
        let dead_until = millis(request.dead_until);
        let owner = request.owner;
        self.with(|client| async move {
            client
                .execute(BURY, &[&now, &max_attempts, &dead_until])
                .await?;
            let rows = client
                .query(
                    CLAIM,
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

    async fn renew(
        &self,
        id: &str,
        owner: &str,
        lease_until: SystemTime,
    ) -> Result<bool, StoreError> {
        self.with(|client| async move {
            let changed = client
                .execute(
                    "UPDATE countersign_inbox SET due_at = $3
                      WHERE id = $1 AND lease_owner = $2 AND state = 'leased'",
                    &[&id, &owner, &millis(lease_until)],
                )
                .await?;
            Ok(changed == 1)
        })
        .await
    }

    async fn complete(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        self.with(|client| async move {
            let changed = client
                .execute(
                    "UPDATE countersign_inbox
                        SET state = 'done', lease_owner = NULL, body = NULL,
                            signed_headers = NULL, last_error = NULL
                      WHERE id = $1 AND lease_owner = $2 AND state = 'leased'",
                    &[&id, &owner],
                )
                .await?;
            Ok(changed == 1)
        })
        .await
    }

    async fn fail(
        &self,
        id: &str,
        owner: &str,
        error: &str,
        retry_at: Option<SystemTime>,
        dead_until: SystemTime,
    ) -> Result<bool, StoreError> {
        let (retry_at, dead_until) = (retry_at.map(millis), millis(dead_until));
        self.with(|client| async move {
            let changed = client
                .execute(
                    "UPDATE countersign_inbox
                        SET state = CASE WHEN $4::BIGINT IS NULL THEN 'dead' ELSE 'pending' END,
                            due_at = coalesce($4::BIGINT, due_at), lease_owner = NULL,
                            last_error = $3,
                            expires_at = CASE WHEN $4::BIGINT IS NULL THEN $5 ELSE expires_at END
                      WHERE id = $1 AND lease_owner = $2 AND state = 'leased'",
                    &[&id, &owner, &error, &retry_at, &dead_until],
                )
                .await?;
            Ok(changed == 1)
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
                    "SELECT id, provider, tenant, attempts, last_error, received_at
                       FROM countersign_inbox
                      WHERE state = 'dead' AND ($1::TEXT IS NULL OR tenant = $1)
                      ORDER BY received_at DESC, id LIMIT $2",
                    &[&tenant, &limit],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| {
                    let provider: String = row.get(1);
                    DeadLetter {
                        id: row.get(0),
                        provider: Provider::from_name(&provider).unwrap_or(Provider::Contentstack),
                        tenant: row.get(2),
                        attempts: u32::try_from(row.get::<_, i32>(3)).unwrap_or(0),
                        last_error: row.get(4),
                        received_at: from_millis(row.get(5)),
                    }
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
    ) -> Result<bool, StoreError> {
        self.with(|client| async move {
            let changed = client
                .execute(
                    "UPDATE countersign_inbox SET state = 'pending', due_at = $3, attempts = 0
                      WHERE id = $1 AND state = 'dead' AND ($2::TEXT IS NULL OR tenant = $2)",
                    &[&id, &tenant, &millis(now)],
                )
                .await?;
            Ok(changed == 1)
        })
        .await
    }

    async fn purge(&self, now: SystemTime) -> Result<u64, StoreError> {
        self.with(|client| async move {
            client
                .execute(
                    "DELETE FROM countersign_inbox
                      WHERE state IN ('done', 'dead') AND expires_at <= $1",
                    &[&millis(now)],
                )
                .await
        })
        .await
    }

    async fn stats(&self) -> Result<InboxStats, StoreError> {
        self.with(|client| async move {
            let rows = client
                .query(
                    "SELECT state, count(*), min(received_at) FROM countersign_inbox
                      WHERE state != 'done' GROUP BY state",
                    &[],
                )
                .await?;
            let mut stats = InboxStats::default();
            for row in rows {
                let (state, count, oldest): (String, i64, i64) =
                    (row.get(0), row.get(1), row.get(2));
                let count = u64::try_from(count).unwrap_or(0);
                match state.as_str() {
                    "pending" => stats.pending = count,
                    "leased" => stats.leased = count,
                    _ => stats.dead = count,
                }
                if state != "dead" {
                    let oldest = from_millis(oldest);
                    stats.oldest_unhandled =
                        Some(stats.oldest_unhandled.map_or(oldest, |o| o.min(oldest)));
                }
            }
            Ok(stats)
        })
        .await
    }
}
