//! [`SqliteInbox`]: the inbox in one SQLite file, for one instance (feature `inbox-sqlite`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    ClaimRequest, Commit, DeadLetter, InboxDelivery, InboxStats, InboxStore, Provider, StoreError,
    StoreErrorKind, from_millis, millis,
};

/// The schema: one row per delivery. `due_at` is when a pending delivery may be taken, or
/// when a leased one's lease ends; `expires_at` when a handled one is forgotten.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS countersign_inbox (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    tenant TEXT,
    body BLOB,
    signed_headers TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at INTEGER NOT NULL,
    lease_owner TEXT,
    received_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS countersign_inbox_due ON countersign_inbox (state, due_at);
CREATE INDEX IF NOT EXISTS countersign_inbox_tenant ON countersign_inbox (tenant, state);
";

/// Each tenant's oldest due delivery before a second of any: a delivery's turn is its rank
/// within its tenant plus the tenant's deliveries on live leases, and none past the tenant's
/// concurrency is taken. Each lease is `{owner}:{attempt}`.
const CLAIM: &str = "
UPDATE countersign_inbox
   SET state = 'leased', lease_owner = ?1 || ':' || (attempts + 1), due_at = ?2,
       attempts = attempts + 1
 WHERE id IN (
     SELECT id FROM (
         SELECT i.id, i.due_at,
                ROW_NUMBER() OVER (PARTITION BY i.tenant ORDER BY i.due_at, i.id)
                    + coalesce(b.busy, 0) AS turn
           FROM countersign_inbox i
           LEFT JOIN (SELECT tenant, count(*) AS busy FROM countersign_inbox
                       WHERE state = 'leased' AND due_at > ?3 GROUP BY tenant) b
             ON b.tenant IS i.tenant
          WHERE i.state IN ('pending', 'leased') AND i.due_at <= ?3)
      WHERE turn <= ?5
      ORDER BY turn, due_at, id
      LIMIT ?4)
RETURNING id, provider, tenant, body, signed_headers, attempts, received_at";

/// A delivery whose worker died on its last attempt is a dead letter, not taken again.
const BURY: &str = "
UPDATE countersign_inbox
   SET state = 'dead', lease_owner = NULL, expires_at = ?3,
       last_error = 'its worker stopped during the last attempt (the lease lapsed)'
 WHERE state = 'leased' AND due_at <= ?1 AND attempts >= ?2";

/// The inbox in a SQLite file: durable (write-ahead log, `synchronous = FULL`: a delivery
/// acknowledged is on disk), readable by its owner only. For one instance; a fleet shares a
/// PostgreSQL inbox.
#[derive(Clone)]
pub struct SqliteInbox {
    connection: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

impl fmt::Debug for SqliteInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteInbox")
            .field("path", &self.path)
            .finish()
    }
}

fn unavailable(error: impl fmt::Display) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, error.to_string())
}

impl SqliteInbox {
    /// The inbox in the SQLite file at `path`, made (0600, its directory too) with its table
    /// when absent.
    ///
    /// # Errors
    /// When the file cannot be opened or written.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
        }
        let connection = Connection::open(&path).map_err(unavailable)?;
        #[cfg(unix)]
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(unavailable)?;
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(unavailable)?;
        connection.execute_batch(SCHEMA).map_err(unavailable)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            path: Arc::new(path),
        })
    }

    /// Runs `f` on the connection off the async threads.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut connection).map_err(unavailable)
        })
        .await
        .map_err(unavailable)?
    }
}

fn delivery(row: &rusqlite::Row<'_>) -> rusqlite::Result<InboxDelivery> {
    let provider: String = row.get(1)?;
    let signed_headers: Option<String> = row.get(4)?;
    Ok(InboxDelivery {
        id: row.get(0)?,
        provider: Provider::from_name(&provider).unwrap_or(Provider::Contentstack),
        tenant: row.get(2)?,
        body: row.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default().into(),
        signed_headers: signed_headers
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
        attempt: row.get(5)?,
        received_at: from_millis(row.get(6)?),
    })
}

impl InboxStore for SqliteInbox {
    async fn commit(
        &self,
        delivery: &InboxDelivery,
        expires_at: SystemTime,
        tenant_limit: u64,
    ) -> Result<Commit, StoreError> {
        let delivery = delivery.clone();
        let signed_headers =
            serde_json::to_string(&delivery.signed_headers).map_err(unavailable)?;
        self.run(move |db| {
            let db = db.transaction()?;
            let known = db
                .query_row(
                    "SELECT 1 FROM countersign_inbox WHERE id = ?1",
                    [&delivery.id],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if known {
                return Ok(Commit::Duplicate);
            }
            let waiting: u64 = db.query_row(
                "SELECT count(*) FROM countersign_inbox
                  WHERE tenant IS ?1 AND state IN ('pending', 'leased')",
                [&delivery.tenant],
                |row| row.get(0),
            )?;
            if waiting >= tenant_limit {
                return Ok(Commit::TenantFull);
            }
            let received = millis(delivery.received_at);
            db.execute(
                "INSERT INTO countersign_inbox
                     (id, provider, tenant, body, signed_headers, state, due_at, received_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?7)",
                params![
                    delivery.id,
                    delivery.provider.as_str(),
                    delivery.tenant,
                    delivery.body.as_ref(),
                    signed_headers,
                    received,
                    millis(expires_at),
                ],
            )?;
            db.commit()?;
            Ok(Commit::New)
        })
        .await
    }

    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<InboxDelivery>, StoreError> {
        let owner = request.owner.to_owned();
        let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
        let concurrency = i64::try_from(request.tenant_concurrency).unwrap_or(i64::MAX);
        let (now, lease_until) = (millis(request.now), millis(request.lease_until));
        let (max_attempts, dead_until) = (request.max_attempts, millis(request.dead_until));
        self.run(move |db| {
            let db = db.transaction()?;
            db.execute(BURY, params![now, max_attempts, dead_until])?;
            let claimed = {
                let mut statement = db.prepare_cached(CLAIM)?;
                let rows = statement.query_map(
                    params![owner, lease_until, now, limit, concurrency],
                    delivery,
                )?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            db.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn renew(
        &self,
        id: &str,
        owner: &str,
        lease_until: SystemTime,
    ) -> Result<bool, StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(move |db| {
            db.execute(
                "UPDATE countersign_inbox SET due_at = ?3
                  WHERE id = ?1 AND lease_owner = ?2 AND state = 'leased'",
                params![id, owner, millis(lease_until)],
            )
            .map(|changed| changed == 1)
        })
        .await
    }

    async fn complete(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(move |db| {
            // The body is not needed any more: the id alone answers a replay.
            db.execute(
                "UPDATE countersign_inbox
                    SET state = 'done', lease_owner = NULL, body = NULL, signed_headers = NULL,
                        last_error = NULL
                  WHERE id = ?1 AND lease_owner = ?2 AND state = 'leased'",
                params![id, owner],
            )
            .map(|changed| changed == 1)
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
        let (id, owner, error) = (id.to_owned(), owner.to_owned(), error.to_owned());
        let (retry_at, dead_until) = (retry_at.map(millis), millis(dead_until));
        self.run(move |db| {
            db.execute(
                "UPDATE countersign_inbox
                    SET state = CASE WHEN ?4 IS NULL THEN 'dead' ELSE 'pending' END,
                        due_at = coalesce(?4, due_at), lease_owner = NULL, last_error = ?3,
                        expires_at = CASE WHEN ?4 IS NULL THEN ?5 ELSE expires_at END
                  WHERE id = ?1 AND lease_owner = ?2 AND state = 'leased'",
                params![id, owner, error, retry_at, dead_until],
            )
            .map(|changed| changed == 1)
        })
        .await
    }

    async fn dead_letters(
        &self,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let tenant = tenant.map(str::to_owned);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |db| {
            let mut statement = db.prepare_cached(
                "SELECT id, provider, tenant, attempts, last_error, received_at
                   FROM countersign_inbox
                  WHERE state = 'dead' AND (?1 IS NULL OR tenant = ?1)
                  ORDER BY received_at DESC, id LIMIT ?2",
            )?;
            let rows = statement.query_map(params![tenant, limit], |row| {
                let provider: String = row.get(1)?;
                Ok(DeadLetter {
                    id: row.get(0)?,
                    provider: Provider::from_name(&provider).unwrap_or(Provider::Contentstack),
                    tenant: row.get(2)?,
                    attempts: row.get(3)?,
                    last_error: row.get(4)?,
                    received_at: from_millis(row.get(5)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn retry(
        &self,
        tenant: Option<&str>,
        id: &str,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.map(str::to_owned), id.to_owned());
        self.run(move |db| {
            db.execute(
                "UPDATE countersign_inbox
                    SET state = 'pending', due_at = ?3, attempts = 0
                  WHERE id = ?1 AND state = 'dead' AND (?2 IS NULL OR tenant = ?2)",
                params![id, tenant, millis(now)],
            )
            .map(|changed| changed == 1)
        })
        .await
    }

    async fn purge(&self, now: SystemTime) -> Result<u64, StoreError> {
        self.run(move |db| {
            db.execute(
                "DELETE FROM countersign_inbox
                  WHERE state IN ('done', 'dead') AND expires_at <= ?1",
                [millis(now)],
            )
            .map(|deleted| deleted as u64)
        })
        .await
    }

    async fn stats(&self) -> Result<InboxStats, StoreError> {
        self.run(|db| {
            let mut stats = InboxStats::default();
            let mut statement = db.prepare_cached(
                "SELECT state, count(*), min(received_at) FROM countersign_inbox
                  WHERE state != 'done' GROUP BY state",
            )?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let (state, count, oldest): (String, u64, i64) =
                    (row.get(0)?, row.get(1)?, row.get(2)?);
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
