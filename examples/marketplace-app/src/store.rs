//! Durable records: installations, events per stack, settings per tenant, and the app's OAuth
//! tokens per installation, sealed ([`SealedTokens`]). In SQLite under
//! DATA_DIR (one instance), or in PostgreSQL when `DATABASE_URL` is set (a fleet shares it).
//!
//! A webhook answered 200 has been committed, once: every delivery's effects are written in
//! one transaction with its delivery id, and a delivery whose id is already there changes
//! nothing (the replay store may have lost its state, or the process died between the commit
//! and the replay store's "done"). Both databases get the same schema through the same
//! numbered migrations. When the database cannot be reached, every operation fails with a
//! [`StoreError`] that the routes answer 503, so Contentstack retries; the pool reconnects on
//! its own once the database is back.

use std::path::Path;
use std::sync::{Arc, Mutex};

use example_support::inbox::AnyInbox;
use example_support::postgres::{Database, Schema, bounded};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

mod tokens;

pub(crate) use tokens::SealedTokens;

/// What a delivery changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The app was installed in the stack (or upgraded there).
    Installed,
    /// The app was uninstalled from the stack.
    Uninstalled,
    /// Anything else: appended to the stack's event log.
    Logged,
}

impl Change {
    fn status(self) -> Option<&'static str> {
        match self {
            Self::Installed => Some("installed"),
            Self::Uninstalled => Some("uninstalled"),
            Self::Logged => None,
        }
    }
}

/// A verified delivery, as recorded.
pub(crate) struct Delivery {
    /// The delivery id: the same for every retry and replay of it.
    pub(crate) id: String,
    pub(crate) change: Change,
    pub(crate) module: String,
    pub(crate) event: String,
    pub(crate) api_key: String,
    pub(crate) triggered_at: Option<String>,
    /// When it happened: its `triggered_at`, else when it was signed.
    pub(crate) happened_at: std::time::SystemTime,
    pub(crate) data: Value,
}

pub(crate) use example_support::postgres::Error as StoreError;

/// The schema, one step per version, in SQLite's dialect; [`POSTGRES_MIGRATIONS`] holds the
/// same steps in PostgreSQL's.
const SQLITE_MIGRATIONS: [(i64, &str); 3] = [
    (
        1,
        "CREATE TABLE IF NOT EXISTS installations (
         api_key TEXT PRIMARY KEY, status TEXT NOT NULL, event TEXT NOT NULL,
         triggered_at TEXT, data TEXT NOT NULL, updated_at INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS events (
         id INTEGER PRIMARY KEY AUTOINCREMENT, api_key TEXT NOT NULL, event TEXT NOT NULL,
         module TEXT NOT NULL, triggered_at TEXT, data TEXT NOT NULL, received_at INTEGER NOT NULL);
     CREATE INDEX IF NOT EXISTS events_by_stack ON events (api_key, id);
     CREATE TABLE IF NOT EXISTS settings (tenant TEXT PRIMARY KEY, json TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS deliveries (
         delivery_id TEXT PRIMARY KEY, received_at INTEGER NOT NULL);",
    ),
    (2, tokens::SQLITE_MIGRATION),
    (3, INSTALLATION_ORDER),
];

/// The schema in PostgreSQL's dialect: the steps of [`SQLITE_MIGRATIONS`].
const POSTGRES_MIGRATIONS: [(i64, &str); 3] = [
    (
        1,
        "CREATE TABLE IF NOT EXISTS installations (
         api_key TEXT PRIMARY KEY, status TEXT NOT NULL, event TEXT NOT NULL,
         triggered_at TEXT, data TEXT NOT NULL, updated_at BIGINT NOT NULL);
     CREATE TABLE IF NOT EXISTS events (
         id BIGSERIAL PRIMARY KEY, api_key TEXT NOT NULL, event TEXT NOT NULL,
         module TEXT NOT NULL, triggered_at TEXT, data TEXT NOT NULL, received_at BIGINT NOT NULL);
     CREATE INDEX IF NOT EXISTS events_by_stack ON events (api_key, id);
     CREATE TABLE IF NOT EXISTS settings (tenant TEXT PRIMARY KEY, json TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS deliveries (
         delivery_id TEXT PRIMARY KEY, received_at BIGINT NOT NULL);",
    ),
    (2, tokens::POSTGRES_MIGRATION),
    (3, INSTALLATION_ORDER),
];

/// When the event an installation's record holds happened (Unix ms): an older event that
/// arrives later (a retry, a dead letter tried again) changes nothing.
const INSTALLATION_ORDER: &str =
    "ALTER TABLE installations ADD COLUMN happened_at BIGINT NOT NULL DEFAULT 0;";

/// Which of the SQLite migrations ran.
const MIGRATIONS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)";

/// The PostgreSQL schema and where its migrations are remembered.
const SCHEMA: Schema = Schema {
    table: "schema_migrations",
    migrations: &POSTGRES_MIGRATIONS,
};

/// The advisory lock one instance of a fleet holds while it reconciles.
const RECONCILE_LOCK: i64 = 7_262_071;

/// Held while this instance reconciles ([`Store::reconcile_lock`]).
pub(crate) struct ReconcileLock {
    _connection: Option<deadpool_postgres::ClientWrapper>,
}

#[derive(Clone)]
pub(crate) struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<Mutex<Connection>>),
    Postgres(Arc<Database>),
}

impl Store {
    /// SQLite in `data_dir`.
    pub(crate) fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("marketplace-app.sqlite3");
        let mut connection = Connection::open(&path)?;
        // The database holds installations and events: this user's only (WAL files inherit).
        #[cfg(unix)]
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
        // Plans that do not depend on bound values, as `SqliteInbox::open` sets them: the
        // inbox's claim is compiled once, even after an `ANALYZE`.
        connection.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        let db = connection.transaction()?;
        db.execute_batch(MIGRATIONS_TABLE)?;
        for (version, sqlite) in SQLITE_MIGRATIONS {
            let done = db
                .query_row(
                    "SELECT 1 FROM schema_migrations WHERE version = ?1",
                    params![version],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !done {
                db.execute_batch(sqlite)?;
                db.execute(
                    "INSERT INTO schema_migrations (version) VALUES (?1)",
                    params![version],
                )?;
            }
        }
        db.commit()?;
        Ok(Self {
            backend: Backend::Sqlite(Arc::new(Mutex::new(connection))),
        })
    }

    /// PostgreSQL at `url` (`postgres://user:password@host:port/database`), pooled. Nothing is
    /// sent yet: the migrations run with the first operation, so the app starts (and answers
    /// 503) while the server is down.
    pub(crate) fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Postgres(Arc::new(Database::connect(url, SCHEMA)?)),
        })
    }

    /// The SQLite connection, for tests that write what no request can.
    #[cfg(test)]
    pub(crate) fn sqlite_connection(&self) -> Arc<Mutex<Connection>> {
        match &self.backend {
            Backend::Sqlite(connection) => Arc::clone(connection),
            Backend::Postgres(_) => unreachable!("the tests run on SQLite"),
        }
    }

    /// Runs the migrations now, unless they ran (PostgreSQL; SQLite ran them on open).
    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(pg) => pg.migrated().await,
        }
    }

    /// Runs `f` on the SQLite connection off the async threads.
    async fn sqlite<T: Send + 'static>(
        connection: &Arc<Mutex<Connection>>,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(connection);
        tokio::task::spawn_blocking(move || {
            // The inbox shares this connection and goes on after a panic: so does the app.
            let mut connection = connection
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut connection).map_err(StoreError::from)
        })
        .await?
    }

    /// Records a verified delivery once by its id, in a transaction of its own (see
    /// [`record_sqlite`]). `false`: the delivery was recorded before, and nothing changed.
    pub(crate) async fn record(&self, delivery: Delivery) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(connection) => {
                Self::sqlite(connection, move |db| {
                    let db = db.transaction()?;
                    let new = record_sqlite(&db, &delivery)?;
                    db.commit()?;
                    Ok(new)
                })
                .await
            }
            Backend::Postgres(pg) => {
                bounded(async {
                    let mut client = pg.client().await?;
                    let db = client.transaction().await?;
                    let new = record_postgres(&db, &delivery).await?;
                    db.commit().await?;
                    Ok(new)
                })
                .await
            }
        }
    }

    /// The durable inbox in this database: its table beside the app's, so that a delivery's
    /// effects are written in the inbox's own transaction ([`crate::deliveries`]).
    /// With PostgreSQL, this instance spools under `data_dir` while the database is down.
    pub(crate) fn inbox(&self, data_dir: &Path) -> Result<AnyInbox, StoreError> {
        use countersign_inbox::{Inbox, SqliteInbox};
        Ok(match &self.backend {
            Backend::Sqlite(connection) => {
                AnyInbox::Sqlite(Inbox::new(SqliteInbox::sharing(Arc::clone(connection))?))
            }
            Backend::Postgres(pg) => {
                AnyInbox::postgres(pg.pool().clone(), "marketplace_app_inbox", data_dir)?
            }
        })
    }

    /// Whether the stack has a recorded installation that is not uninstalled: the app's
    /// tenants.
    pub(crate) async fn is_installed(&self, api_key: String) -> Result<bool, StoreError> {
        let status = self
            .column::<String>(
                "SELECT status FROM installations WHERE api_key = ?1",
                api_key,
            )
            .await?;
        Ok(status.as_deref() == Some("installed"))
    }

    /// Every stack with a recorded installation that is not uninstalled: at most `limit`.
    pub(crate) async fn installed_stacks(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match &self.backend {
            Backend::Sqlite(connection) => {
                Self::sqlite(connection, move |db| {
                    let mut statement = db.prepare(
                        "SELECT api_key FROM installations WHERE status = 'installed' LIMIT ?1",
                    )?;
                    let rows = statement.query_map(params![limit], |row| row.get(0))?;
                    rows.collect()
                })
                .await
            }
            Backend::Postgres(pg) => {
                bounded(async {
                    let rows = pg
                        .client()
                        .await?
                        .query(
                            "SELECT api_key FROM installations WHERE status = 'installed' LIMIT $1",
                            &[&limit],
                        )
                        .await?;
                    Ok(rows.iter().map(|row| row.get(0)).collect())
                })
                .await
            }
        }
    }

    /// The installation on `stack` the app holds tokens for (its organization and stack), if
    /// any: what a scheduled reconciliation calls Contentstack as.
    pub(crate) async fn authorized_installation(
        &self,
        stack: String,
    ) -> Result<Option<countersign::contentstack::oauth::Installation>, StoreError> {
        let key = self
            .column::<String>(
                "SELECT installation FROM oauth_tokens WHERE stack_api_key = ?1 AND sealed IS NOT NULL",
                stack,
            )
            .await?;
        // The row's key is `[organization, stack]` (`SealedTokens`).
        Ok(key
            .and_then(|key| serde_json::from_str::<(String, Option<String>)>(&key).ok())
            .map(|(organization_uid, stack_api_key)| {
                countersign::contentstack::oauth::Installation {
                    organization_uid,
                    stack_api_key,
                }
            }))
    }

    /// The fleet's reconciliation lock, when no other instance holds it: with PostgreSQL a
    /// session lock on a connection of its own, released when the guard is dropped (or the
    /// instance dies, with its connection); with SQLite (one instance) always.
    pub(crate) async fn reconcile_lock(&self) -> Result<Option<ReconcileLock>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(ReconcileLock { _connection: None })),
            Backend::Postgres(pg) => {
                bounded(async {
                    // Out of the pool: its lock goes with it, never back to another user.
                    let client = deadpool_postgres::Object::take(pg.client().await?);
                    let locked: bool = client
                        .query_one("SELECT pg_try_advisory_lock($1)", &[&RECONCILE_LOCK])
                        .await?
                        .get(0);
                    Ok(locked.then_some(ReconcileLock {
                        _connection: Some(client),
                    }))
                })
                .await
            }
        }
    }

    /// The one column of the row `sql` selects by `key` (`?1`; `$1` in PostgreSQL), if any.
    pub(super) async fn column<T>(
        &self,
        sql: &'static str,
        key: String,
    ) -> Result<Option<T>, StoreError>
    where
        T: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a> + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite(connection) => {
                Self::sqlite(connection, move |db| {
                    db.query_row(sql, params![key], |row| row.get(0)).optional()
                })
                .await
            }
            Backend::Postgres(pg) => {
                bounded(async {
                    let postgres = sql.replace('?', "$");
                    let row = pg.client().await?.query_opt(&postgres, &[&key]).await?;
                    Ok(row.map(|row| row.get(0)))
                })
                .await
            }
        }
    }

    /// The stack's events, newest first: at most `limit`, those before the event id `before`
    /// when given (the next page). Each has its `id`, `event`, `module`, `triggered_at` and
    /// the webhook's `data`.
    pub(crate) async fn events(
        &self,
        api_key: String,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Value>, StoreError> {
        let before = before.unwrap_or(i64::MAX);
        let event = |id: i64,
                     event: String,
                     module: String,
                     triggered_at: Option<String>,
                     data: String| {
            let data = serde_json::from_str::<Value>(&data).unwrap_or(Value::Null);
            json!({"id": id, "event": event, "module": module, "triggered_at": triggered_at, "data": data})
        };
        match &self.backend {
            Backend::Sqlite(connection) => {
                Self::sqlite(connection, move |db| {
                    let mut statement = db.prepare(
                        "SELECT id, event, module, triggered_at, data FROM events
                         WHERE api_key = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
                    )?;
                    let rows = statement.query_map(params![api_key, before, limit], |row| {
                        Ok(event(
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                        ))
                    })?;
                    rows.collect()
                })
                .await
            }
            Backend::Postgres(pg) => {
                bounded(async {
                    let rows = pg
                        .client()
                        .await?
                        .query(
                            "SELECT id, event, module, triggered_at, data FROM events
                             WHERE api_key = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                            &[&api_key, &before, &i64::from(limit)],
                        )
                        .await?;
                    Ok(rows
                        .iter()
                        .map(|row| {
                            event(row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
                        })
                        .collect())
                })
                .await
            }
        }
    }

    /// The installation record of a stack, if any.
    pub(crate) async fn installation(&self, api_key: String) -> Result<Option<Value>, StoreError> {
        let record = |status: String, event: String, triggered_at: Option<String>| json!({"status": status, "event": event, "triggered_at": triggered_at});
        match &self.backend {
            Backend::Sqlite(connection) => {
                Self::sqlite(connection, move |db| {
                    db.query_row(
                        "SELECT status, event, triggered_at FROM installations WHERE api_key = ?1",
                        params![api_key],
                        |row| Ok(record(row.get(0)?, row.get(1)?, row.get(2)?)),
                    )
                    .optional()
                })
                .await
            }
            Backend::Postgres(pg) => {
                bounded(async {
                    let row = pg
                    .client()
                    .await?
                    .query_opt(
                        "SELECT status, event, triggered_at FROM installations WHERE api_key = $1",
                        &[&api_key],
                    )
                    .await?;
                    Ok(row.map(|row| record(row.get(0), row.get(1), row.get(2))))
                })
                .await
            }
        }
    }

    pub(crate) async fn settings(&self, tenant: String) -> Result<Value, StoreError> {
        let text = self
            .column::<String>("SELECT json FROM settings WHERE tenant = ?1", tenant)
            .await?;
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| json!({})))
    }

    pub(crate) async fn save_settings(
        &self,
        tenant: String,
        settings: Value,
    ) -> Result<(), StoreError> {
        let settings = settings.to_string();
        match &self.backend {
            Backend::Sqlite(connection) => {
                Self::sqlite(connection, move |db| {
                    db.execute(
                        "INSERT INTO settings (tenant, json) VALUES (?1, ?2) ON CONFLICT(tenant) DO UPDATE SET json = ?2",
                        params![tenant, settings],
                    )
                    .map(drop)
                })
                .await
            }
            Backend::Postgres(pg) => {
                bounded(async {
                    pg.client()
                        .await?
                        .execute(
                            "INSERT INTO settings (tenant, json) VALUES ($1, $2) ON CONFLICT(tenant) DO UPDATE SET json = $2",
                            &[&tenant, &settings],
                        )
                        .await?;
                    Ok(())
                })
                .await
            }
        }
    }
}

/// An installation's record, replaced only by an event that happened no earlier than the one
/// it holds: installation events arrive in any order (retries, two workers, a dead letter
/// tried again), and the latest one decides.
const UPSERT_INSTALLATION: &str =
    "INSERT INTO installations (api_key, status, event, triggered_at, data, updated_at, happened_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
     ON CONFLICT (api_key) DO UPDATE
        SET status = ?2, event = ?3, triggered_at = ?4, data = ?5, updated_at = ?6, happened_at = ?7
      WHERE installations.happened_at <= ?7";

/// The rows a delivery's effects write, once per delivery id: installation events keep the
/// installation's record (an uninstall forgets the stack's OAuth tokens authorized before it),
/// every other event goes to its stack's log. `false`: the delivery was recorded before, and
/// nothing changed. In the caller's transaction (the inbox's, or one of its own).
pub(crate) fn record_sqlite(db: &Connection, delivery: &Delivery) -> rusqlite::Result<bool> {
    let now = example_support::unix_now();
    let data = delivery.data.to_string();
    let new = db.execute(
        "INSERT INTO deliveries (delivery_id, received_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![delivery.id, now],
    )? == 1;
    if !new {
        return Ok(false);
    }
    if let Some(status) = delivery.change.status() {
        db.execute(
            UPSERT_INSTALLATION,
            params![
                delivery.api_key,
                status,
                delivery.event,
                delivery.triggered_at,
                data,
                now,
                tokens::millis(delivery.happened_at)
            ],
        )?;
        if delivery.change == Change::Uninstalled {
            db.execute(
                tokens::FORGET_STACK,
                params![delivery.api_key, tokens::millis(delivery.happened_at)],
            )?;
        }
    } else {
        db.execute(
            "INSERT INTO events (api_key, event, module, triggered_at, data, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![delivery.api_key, delivery.event, delivery.module, delivery.triggered_at, data, now],
        )?;
    }
    Ok(true)
}

/// [`record_sqlite`] in PostgreSQL.
pub(crate) async fn record_postgres(
    db: &tokio_postgres::Transaction<'_>,
    delivery: &Delivery,
) -> Result<bool, tokio_postgres::Error> {
    let now = example_support::unix_now();
    let data = delivery.data.to_string();
    let new = db
        .execute(
            "INSERT INTO deliveries (delivery_id, received_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&delivery.id, &now],
        )
        .await?
        == 1;
    if !new {
        return Ok(false);
    }
    if let Some(status) = delivery.change.status() {
        db.execute(
            &UPSERT_INSTALLATION.replace('?', "$"),
            &[
                &delivery.api_key,
                &status,
                &delivery.event,
                &delivery.triggered_at,
                &data,
                &now,
                &tokens::millis(delivery.happened_at),
            ],
        )
        .await?;
        if delivery.change == Change::Uninstalled {
            db.execute(
                &tokens::FORGET_STACK.replace('?', "$"),
                &[&delivery.api_key, &tokens::millis(delivery.happened_at)],
            )
            .await?;
        }
    } else {
        db.execute(
            "INSERT INTO events (api_key, event, module, triggered_at, data, received_at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&delivery.api_key, &delivery.event, &delivery.module, &delivery.triggered_at, &data, &now],
        )
        .await?;
    }
    Ok(true)
}
