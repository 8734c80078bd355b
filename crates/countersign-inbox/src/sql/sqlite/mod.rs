//! [`SqliteInbox`]: the inbox in one SQLite file, for one instance (feature `sqlite`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use countersign_core::replay::{StoreError, StoreErrorKind};

use crate::batch::Batcher;
use crate::delivery::{
    BoxError, ClaimRequest, Commit, DeadLetter, Held, InboxDelivery, InboxStats, Outcome, Retried,
    millis,
};
use crate::inbox::Inbox;
use crate::sql;
use crate::store::{OperatorStore, WorkerStore};
use crate::worker::{self, Handled, StoreFailed, Workers};

mod group;

/// Each tenant's oldest due delivery before a second of any, at a cost that does not grow with
/// the backlog: the tenants with pending deliveries are found by a loose scan of the index
/// (one seek per tenant, in the index of pending deliveries, named: without statistics SQLite
/// would walk every pending delivery in another and sort their tenants, a cost that grows with
/// the backlog), each gives at most `?6` of its oldest due ones, and the leases that
/// lapsed are taken over with them (the tenants the outer loop, whatever SQLite's statistics
/// say: `CROSS JOIN`). A candidate's turn is its rank within its tenant plus the tenant's
/// deliveries on live leases; none past the tenant's concurrency `?5` is taken. Among equal
/// turns the tenants take their places in a rotation that each claim starts elsewhere (`?7`),
/// so that a tenant whose backlog is older never goes before a newcomer for long. Each lease
/// is `{owner}:{attempt}`. Each limit is a `CAST`: a bare `LIMIT ?N` made SQLite compile the
/// statement again at every call (the test `no_statement_is_compiled_again_for_other_values`).
const CLAIM: &str = "
WITH RECURSIVE tenants(tenant) AS (
    SELECT (SELECT tenant FROM countersign_inbox INDEXED BY countersign_inbox_pending
             WHERE state = 'pending' AND tenant IS NOT NULL ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT tenant FROM countersign_inbox INDEXED BY countersign_inbox_pending
             WHERE state = 'pending' AND tenant > t.tenant ORDER BY tenant LIMIT 1)
      FROM tenants t WHERE t.tenant IS NOT NULL
),
candidates AS (
    SELECT i.id, i.tenant, i.due_at FROM tenants t CROSS JOIN countersign_inbox i
        ON i.id IN (SELECT id FROM countersign_inbox
                     WHERE state = 'pending' AND tenant = t.tenant AND due_at <= ?3
                     ORDER BY due_at, id LIMIT CAST(?6 AS BIGINT))
    UNION ALL
    SELECT id, tenant, due_at FROM (SELECT id, tenant, due_at FROM countersign_inbox
         WHERE state = 'pending' AND tenant IS NULL AND due_at <= ?3
         ORDER BY due_at, id LIMIT CAST(?6 AS BIGINT))
    UNION ALL
    SELECT id, tenant, due_at FROM countersign_inbox WHERE state = 'leased' AND due_at <= ?3
),
busy AS (
    SELECT tenant, count(*) AS n FROM countersign_inbox
     WHERE state = 'leased' AND due_at > ?3 GROUP BY tenant
),
ranked AS (
    SELECT c.id, c.due_at,
           ROW_NUMBER() OVER (PARTITION BY c.tenant ORDER BY c.due_at, c.id)
               + coalesce(b.n, 0) AS turn,
           DENSE_RANK() OVER (ORDER BY c.tenant) AS place
      FROM candidates c LEFT JOIN busy b ON b.tenant IS c.tenant
),
rotated AS (
    SELECT id, due_at, turn, (place + ?7) % max(place) OVER () AS spot FROM ranked
)
UPDATE countersign_inbox
   SET state = 'leased', lease_owner = ?1 || ':' || (attempts + 1), due_at = ?2,
       attempts = attempts + 1
 WHERE id IN (SELECT id FROM rotated WHERE turn <= ?5 ORDER BY turn, spot, due_at, id
                LIMIT CAST(?4 AS BIGINT))
RETURNING ";

/// The inbox in a SQLite file: durable (write-ahead log, `synchronous = FULL`: a delivery
/// acknowledged is on disk), readable by its owner only. For one instance; a fleet shares a
/// PostgreSQL inbox.
#[derive(Clone)]
pub struct SqliteInbox {
    connection: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
    sql: Arc<sql::Statements>,
    /// The commits waiting for the next group ([`group`]).
    group: Arc<Batcher<sql::Pending, Result<Commit, StoreError>>>,
    /// The connection's `synchronous` level as opened (`FULL` is 2): a delivery's commit waits
    /// for the disk at it, the workers' bookkeeping does not.
    durable: i64,
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
    /// when absent. Its page cache (SQLite's copy in memory of the pages it read) may grow to
    /// 64 MiB: delivery ids are random, so new ones land all over the index of ids, and with
    /// SQLite's default 2 MiB that index is read back from the file under load. Its plans do
    /// not depend on the values bound to them (SQLite's query planner stability guarantee):
    /// otherwise, once the file has statistics (an `ANALYZE`, a `PRAGMA optimize`), SQLite
    /// would compile the claim and the commit's count again at each run. A handler run by
    /// [`Inbox::work_in_transaction`] writes on this connection, under the same guarantee.
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
        settle(&connection).map_err(unavailable)?;
        Self::sharing(Arc::new(Mutex::new(connection)))
    }

    /// The inbox in the database your own `connection` opened, its table made when absent:
    /// share it so that a handler run by [`Inbox::work_in_transaction`] writes your tables in
    /// the inbox's transaction. Open it durable (`PRAGMA journal_mode = WAL; PRAGMA
    /// synchronous = FULL`), readable by its owner only, with a page cache to match your load
    /// ([`SqliteInbox::open`] takes `PRAGMA cache_size = -65536`, 64 MiB; SQLite's default is
    /// 2 MiB). The `synchronous` level is read here, once: deliveries commit at it, so a
    /// connection opened at `NORMAL` acknowledges deliveries that a power loss may erase. The
    /// workers' bookkeeping runs at `NORMAL`, which is safe from corruption in WAL mode only.
    /// This sets the connection's cache of prepared statements to 64. Once the database has
    /// statistics (`ANALYZE`), SQLite compiles some of the inbox's statements again at each
    /// run unless the connection has the query planner stability guarantee, as `open` sets it
    /// (`set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)`); it is left as you set it.
    ///
    /// # Errors
    /// When the table cannot be made.
    pub fn sharing(connection: Arc<Mutex<Connection>>) -> Result<Self, StoreError> {
        let claim = format!("{CLAIM}{}", sql::CLAIMED);
        let sql = sql::Statements::new(sql::DEFAULT_TABLE, false, &claim);
        let (path, durable) = {
            let db = connection.lock().unwrap_or_else(PoisonError::into_inner);
            db.execute_batch(&sql.schema).map_err(unavailable)?;
            // Room for every statement of the store beside the application's own.
            db.set_prepared_statement_cache_capacity(64);
            let durable = synchronous(&db).map_err(unavailable)?;
            (db.path().map(PathBuf::from).unwrap_or_default(), durable)
        };
        Ok(Self {
            connection,
            path: Arc::new(path),
            sql: Arc::new(sql),
            group: Arc::new(Batcher::new(
                group::MOST,
                sql::MOST_GROUP_BYTES,
                sql::Pending::weight,
            )),
            durable,
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

    /// Runs `f` as the workers' bookkeeping (a claim, a lease, an outcome, a purge): committed
    /// without waiting for the disk (`synchronous = NORMAL` for it alone), as PostgreSQL's is.
    /// A crash of the machine may forget its last moments, and then a delivery is taken or
    /// handled again, which a handler bears anyway; the database stays whole (write-ahead
    /// log), and the next commit that waits for the disk takes these with it.
    async fn bookkeeping<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let durable = self.durable;
        self.run(move |db| {
            let relaxed = durable > 1 && set_synchronous(db, 1).is_ok();
            let done = f(db);
            if relaxed {
                // Durable again before another operation takes the connection (a group of
                // commits checks it too).
                set_synchronous(db, durable)?;
            }
            done
        })
        .await
    }

    /// Runs the bookkeeping statement `which` picks with `values`: the rows it changed.
    async fn change(
        &self,
        which: fn(&sql::Statements) -> &str,
        values: Vec<Value>,
    ) -> Result<u64, StoreError> {
        self.bookkeeping(statement(Arc::clone(&self.sql), which, values))
            .await
    }
}

impl Inbox<SqliteInbox> {
    /// Like [`Inbox::work`], with a handler that writes in the inbox's own transaction: its
    /// writes and the delivery's "handled" commit together, or not at all (when it fails, or
    /// when its lease was lost meanwhile), so its effects happen exactly once. Share the
    /// database with [`SqliteInbox::sharing`] to write your own tables.
    ///
    /// The handler runs off the async threads and holds the database while it runs: keep it
    /// to the writes, and do slow work (an API call) in a plain [`Inbox::work`] handler.
    #[must_use = "the workers stop when this is dropped"]
    pub fn work_in_transaction<H>(&self, concurrency: usize, handler: H) -> Workers
    where
        H: Fn(&rusqlite::Transaction<'_>, &InboxDelivery) -> Result<(), BoxError>
            + Send
            + Sync
            + 'static,
    {
        let handler = Arc::new(handler);
        let store = self.inner.store.clone();
        let handler: worker::Run = Arc::new(move |delivery, lease| {
            let (store, handler) = (store.clone(), Arc::clone(&handler));
            let sql = Arc::clone(&store.sql);
            Box::pin(async move {
                let connection = Arc::clone(&store.connection);
                let handled = tokio::task::spawn_blocking(move || {
                    let mut db = connection.lock().unwrap_or_else(PoisonError::into_inner);
                    let db = db.transaction().map_err(StoreFailed::boxed)?;
                    handler(&db, &delivery)?;
                    let completed = db
                        .execute(&sql.complete, params![delivery.id, lease])
                        .map_err(StoreFailed::boxed)?;
                    if completed == 0 {
                        return Ok(Handled::LostLease);
                    }
                    db.commit().map_err(StoreFailed::boxed)?;
                    Ok::<_, BoxError>(Handled::Completed)
                })
                .await;
                match handled {
                    Ok(handled) => handled,
                    Err(join) if join.is_panic() => Err("the handler panicked".into()),
                    Err(_) => Err("the handler was cancelled".into()),
                }
            })
        });
        worker::start(
            std::sync::Arc::clone(&self.inner),
            concurrency.max(1),
            worker::in_transaction(handler),
        )
    }
}

/// What [`SqliteInbox::open`] sets on its connection: a write-ahead log, each commit on disk,
/// a page cache of 64 MiB, and plans that do not depend on bound values.
fn settle(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -65536;",
    )?;
    connection.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// The statement `which` picks, run with `values`: the rows it changed.
fn statement(
    sql: Arc<sql::Statements>,
    which: fn(&sql::Statements) -> &str,
    values: Vec<Value>,
) -> impl FnOnce(&mut Connection) -> rusqlite::Result<u64> + Send + 'static {
    move |db| {
        db.prepare_cached(which(&sql))?
            .execute(rusqlite::params_from_iter(values.iter()))
            .map(|changed| changed as u64)
    }
}

/// The connection's `synchronous` level (0 off, 1 normal, 2 full, 3 extra).
fn synchronous(db: &Connection) -> rusqlite::Result<i64> {
    db.prepare_cached("PRAGMA synchronous")?
        .query_row([], |row| row.get(0))
}

/// Sets the connection's `synchronous` level, by a statement prepared once per level (the
/// workers' bookkeeping sets it twice per write).
fn set_synchronous(db: &Connection, level: i64) -> rusqlite::Result<()> {
    let set = match level {
        0 => "PRAGMA synchronous = 0",
        1 => "PRAGMA synchronous = 1",
        2 => "PRAGMA synchronous = 2",
        _ => "PRAGMA synchronous = 3",
    };
    db.prepare_cached(set)?.raw_execute().map(drop)
}

/// A text parameter.
fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

/// A claimed row ([`sql::CLAIMED`]).
fn delivery(row: &rusqlite::Row<'_>) -> rusqlite::Result<InboxDelivery> {
    Ok(sql::delivery((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    )))
}

impl WorkerStore for SqliteInbox {
    async fn commit(
        &self,
        delivery: &InboxDelivery,
        expires_at: SystemTime,
        tenant_limit: Option<u64>,
    ) -> Result<Commit, StoreError> {
        let pending = sql::Pending::new(delivery, expires_at, tenant_limit).map_err(unavailable)?;
        let (connection, sql) = (Arc::clone(&self.connection), Arc::clone(&self.sql));
        let durable = self.durable;
        let write = move |group: Vec<sql::Pending>| {
            let (connection, sql) = (Arc::clone(&connection), Arc::clone(&sql));
            async move {
                let members = group.len();
                tokio::task::spawn_blocking(move || {
                    let mut db = connection.lock().unwrap_or_else(PoisonError::into_inner);
                    group::write(&mut db, &sql, durable, &group)
                })
                .await
                .unwrap_or_else(|_| group::failed(members, "the inbox's committer failed"))
            }
        };
        self.group
            .submit(pending, write)
            .await
            .unwrap_or_else(|| Err(unavailable("the inbox's committer stopped")))
    }

    async fn set_aside(
        &self,
        delivery: &InboxDelivery,
        note: &str,
        dead_until: SystemTime,
    ) -> Result<Commit, StoreError> {
        let signed_headers =
            serde_json::to_string(&delivery.signed_headers).map_err(unavailable)?;
        let values = vec![
            text(&delivery.id),
            text(delivery.provider.as_str()),
            delivery.tenant.clone().into(),
            Value::Blob(delivery.body.to_vec()),
            text(&signed_headers),
            millis(delivery.received_at).into(),
            millis(dead_until).into(),
            text(note),
        ];
        // A delivery acknowledged from the spool: durable before its spool entry goes.
        let set_aside = statement(Arc::clone(&self.sql), |sql| &sql.set_aside, values);
        let inserted = self.run(set_aside).await?;
        Ok(if inserted == 1 {
            Commit::New
        } else {
            Commit::Duplicate
        })
    }

    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<InboxDelivery>, StoreError> {
        let owner = request.owner.to_owned();
        let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
        let concurrency = i64::try_from(request.tenant_concurrency).unwrap_or(i64::MAX);
        let (now, lease_until) = (millis(request.now), millis(request.lease_until));
        let (max_attempts, dead_until) = (request.max_attempts, millis(request.dead_until));
        let rotation = i64::from(request.rotation);
        let sql = Arc::clone(&self.sql);
        self.bookkeeping(move |db| {
            let db = db.transaction()?;
            db.prepare_cached(&sql.bury)?
                .execute(params![now, max_attempts, dead_until])?;
            let claimed = {
                let mut statement = db.prepare_cached(&sql.claim)?;
                let rows = statement.query_map(
                    params![
                        owner,
                        lease_until,
                        now,
                        limit,
                        concurrency,
                        concurrency.min(limit),
                        rotation
                    ],
                    delivery,
                )?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            db.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn renew(&self, id: &str, lease: &str, until: SystemTime) -> Result<bool, StoreError> {
        self.change(
            |sql| &sql.renew,
            vec![text(id), text(lease), millis(until).into()],
        )
        .await
        .map(|changed| changed == 1)
    }

    async fn complete(&self, id: &str, lease: &str) -> Result<bool, StoreError> {
        self.change(|sql| &sql.complete, vec![text(id), text(lease)])
            .await
            .map(|changed| changed == 1)
    }

    async fn fail(
        &self,
        id: &str,
        lease: &str,
        error: &str,
        retry_at: Option<SystemTime>,
        dead_until: SystemTime,
    ) -> Result<bool, StoreError> {
        let values = vec![
            text(id),
            text(lease),
            text(error),
            retry_at.map(millis).into(),
            millis(dead_until).into(),
        ];
        self.change(|sql| &sql.fail, values)
            .await
            .map(|changed| changed == 1)
    }

    async fn record(&self, outcomes: &[(Held, Outcome)]) -> Result<Vec<bool>, StoreError> {
        let (sql, outcomes) = (Arc::clone(&self.sql), outcomes.to_vec());
        self.bookkeeping(move |db| {
            let db = db.transaction()?;
            let recorded = outcomes
                .iter()
                .map(|(held, outcome)| {
                    let changed = match outcome {
                        Outcome::Handled => db
                            .prepare_cached(&sql.complete)?
                            .execute(params![held.id, held.lease])?,
                        Outcome::Failed {
                            error,
                            retry_at,
                            dead_until,
                        } => db.prepare_cached(&sql.fail)?.execute(params![
                            held.id,
                            held.lease,
                            error,
                            retry_at.map(millis),
                            millis(*dead_until)
                        ])?,
                    };
                    Ok(changed == 1)
                })
                .collect::<rusqlite::Result<Vec<_>>>()?;
            db.commit()?;
            Ok(recorded)
        })
        .await
    }

    async fn renew_all(
        &self,
        held: &[Held],
        lease_until: SystemTime,
    ) -> Result<Vec<bool>, StoreError> {
        let (sql, held, until) = (Arc::clone(&self.sql), held.to_vec(), millis(lease_until));
        self.bookkeeping(move |db| {
            let db = db.transaction()?;
            let renewed = held
                .iter()
                .map(|held| {
                    let changed = db
                        .prepare_cached(&sql.renew)?
                        .execute(params![held.id, held.lease, until])?;
                    Ok(changed == 1)
                })
                .collect::<rusqlite::Result<Vec<_>>>()?;
            db.commit()?;
            Ok(renewed)
        })
        .await
    }

    async fn crowded(&self, threshold: u64) -> Result<Vec<Option<String>>, StoreError> {
        let sql = Arc::clone(&self.sql);
        let threshold = i64::try_from(threshold).unwrap_or(i64::MAX);
        self.run(move |db| {
            let mut statement = db.prepare_cached(&sql.crowded)?;
            let rows = statement.query_map([threshold], |row| row.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn purge(&self, now: SystemTime) -> Result<u64, StoreError> {
        let now = millis(now);
        let mut forgotten = 0;
        loop {
            // A batch and its mark in one transaction of their own: other operations take
            // the connection between batches.
            let sql = Arc::clone(&self.sql);
            let (purged, more) = self
                .bookkeeping(move |db| {
                    let db = db.transaction()?;
                    let candidates = db
                        .prepare_cached(&sql.purgeable)?
                        .query_map(params![now, sql::PURGE_BATCH], |row| {
                            Ok((row.get(0)?, row.get(1)?))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    let (ids, more) = sql::purge_batch(candidates);
                    let ids = serde_json::to_string(&ids)
                        .map_err(|error| rusqlite::Error::ToSqlConversionFailure(error.into()))?;
                    let received = db
                        .prepare_cached(&sql.purge)?
                        .query_map(params![ids, now], |row| row.get::<_, i64>(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    if let Some(up_to) = received.iter().max() {
                        db.prepare_cached(&sql.mark_purged)?
                            .execute(params![up_to])?;
                    }
                    db.commit()?;
                    Ok((received.len(), more))
                })
                .await?;
            forgotten += purged as u64;
            if purged == 0 || !more {
                return Ok(forgotten);
            }
        }
    }

    async fn stats(&self) -> Result<InboxStats, StoreError> {
        let sql = Arc::clone(&self.sql);
        self.run(move |db| {
            let mut statement = db.prepare_cached(&sql.stats)?;
            let rows =
                statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            Ok(sql::stats(rows.collect::<rusqlite::Result<Vec<_>>>()?))
        })
        .await
    }
}

impl OperatorStore for SqliteInbox {
    async fn purged_up_to(&self) -> Result<Option<SystemTime>, StoreError> {
        let sql = Arc::clone(&self.sql);
        self.run(move |db| {
            db.prepare_cached(&sql.purged_up_to)?
                .query_row([], |row| row.get::<_, i64>(0))
                .optional()
        })
        .await
        .map(|up_to| up_to.map(crate::delivery::from_millis))
    }

    async fn known(&self, ids: &[String]) -> Result<Vec<bool>, StoreError> {
        let (sql, ids) = (Arc::clone(&self.sql), ids.to_vec());
        self.run(move |db| {
            let mut statement = db.prepare_cached(&sql.known)?;
            ids.iter().map(|id| statement.exists(params![id])).collect()
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
        let sql = Arc::clone(&self.sql);
        self.run(move |db| {
            let mut statement = db.prepare_cached(&sql.dead_letters)?;
            let rows = statement.query_map(params![tenant, limit], |row| {
                Ok(sql::dead_letter((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                )))
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
        tenant_limit: Option<u64>,
    ) -> Result<Retried, StoreError> {
        let (sql, id, tenant) = (
            Arc::clone(&self.sql),
            id.to_owned(),
            tenant.map(str::to_owned),
        );
        let limit = tenant_limit.map_or(i64::MAX, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
        self.run(move |db| {
            let retried =
                db.prepare_cached(&sql.retry)?
                    .execute(params![id, tenant, millis(now), limit])?;
            if retried == 1 {
                return Ok(Retried::Due);
            }
            let dead = db
                .prepare_cached(&sql.dead)?
                .query_row(params![id, tenant], |_| Ok(()))
                .optional()?
                .is_some();
            Ok(if dead {
                Retried::TenantFull
            } else {
                Retried::NotFound
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans for `statement` over the inbox's schema, without statistics.
    fn plan(statement: &str, values: impl rusqlite::Params) -> String {
        let db = Connection::open_in_memory().unwrap();
        let sql = sql::Statements::new(sql::DEFAULT_TABLE, false, "");
        db.execute_batch(&sql.schema).unwrap();
        let mut explain = db
            .prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
            .unwrap();
        let steps = explain
            .query_map(values, |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        steps.join("; ")
    }

    #[test]
    fn a_purge_batch_finds_its_rows_by_id_and_its_candidates_by_state() {
        // By the primary key: through the index of states, each batch walked every row past
        // its time.
        let purge = plan(sql::PURGE, params!["[\"a\", \"b\"]", 5]);
        assert!(
            purge.contains("USING INDEX sqlite_autoindex_countersign_inbox_1 (id=?)"),
            "{purge}"
        );
        let candidates = plan(sql::PURGEABLE, params![5, 10]);
        assert!(
            candidates.contains("USING INDEX countersign_inbox_due (state=? AND due_at<?)"),
            "{candidates}"
        );
    }

    /// SQLite compiles a statement again before each run in which a value bound to it may
    /// change its plan: a bare `LIMIT ?N`, whatever the value, so the claim was compiled anew
    /// at each call (a `CAST` keeps the value out of the plan); and, once the database has
    /// statistics, a bound value compared with an indexed column, unless the connection has
    /// the query planner stability guarantee, as `open` sets it. Every statement the store
    /// runs is compiled once, whatever values it is run with, with statistics or without.
    #[test]
    fn no_statement_is_compiled_again_for_other_values() {
        let sql = sql::Statements::new(
            sql::DEFAULT_TABLE,
            false,
            &format!("{CLAIM}{}", sql::CLAIMED),
        );
        let fresh = Connection::open_in_memory().unwrap();
        settle(&fresh).unwrap();
        fresh.execute_batch(&sql.schema).unwrap();
        assert_compiled_once(&fresh, &sql);

        // 3,000 rows of three tenants and three states, then statistics.
        let analyzed = Connection::open_in_memory().unwrap();
        settle(&analyzed).unwrap();
        analyzed.execute_batch(&sql.schema).unwrap();
        analyzed
            .execute_batch(
                "WITH RECURSIVE n(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM n WHERE n < 3000)
                 INSERT INTO countersign_inbox
                     (id, provider, tenant, state, due_at, received_at, expires_at)
                 SELECT 'old-' || n, 'contentful', 'space-' || (n % 3),
                        CASE n % 3 WHEN 0 THEN 'pending' WHEN 1 THEN 'done' ELSE 'dead' END,
                        n, n, n FROM n;
                 ANALYZE;",
            )
            .unwrap();
        assert_compiled_once(&analyzed, &sql);
    }

    /// Runs each of `sql`'s statements three times on `db`, with other values each time, and
    /// checks that SQLite never compiled one again.
    fn assert_compiled_once(db: &Connection, sql: &sql::Statements) {
        // Every statement, each named once: a new one fails to build here until it is listed.
        macro_rules! every {
            ($($name:ident),* $(,)?) => {{
                let sql::Statements { schema: _, $($name),* } = sql;
                [$($name),*]
            }};
        }
        let statements = every![
            claim,
            known,
            waiting,
            waiting_untenanted,
            insert,
            set_aside,
            bury,
            renew,
            complete,
            fail,
            dead_letters,
            retry,
            dead,
            crowded,
            purgeable,
            purge,
            mark_purged,
            purged_up_to,
            stats,
        ];
        for statement in statements {
            let mut prepared = db.prepare(statement).unwrap();
            for value in [1_i64, 2, 3] {
                for at in 1..=prepared.parameter_count() {
                    prepared.raw_bind_parameter(at, value).unwrap();
                }
                let mut rows = prepared.raw_query();
                while rows.next().unwrap().is_some() {}
            }
            assert_eq!(
                prepared.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "compiled again: {statement}"
            );
        }
    }
}
