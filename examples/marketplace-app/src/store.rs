//! Durable records in SQLite under DATA_DIR: installations, events per stack, settings per
//! tenant. A webhook answered 200 has been committed, once: every delivery's effects are
//! written in one transaction with its delivery id, and a delivery whose id is already there
//! changes nothing (the replay store may have lost its state, or the process died between the
//! commit and the replay store's "done").

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

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

/// A verified delivery, as recorded.
pub(crate) struct Delivery {
    /// The delivery id: the same for every retry and replay of it.
    pub(crate) id: String,
    pub(crate) change: Change,
    pub(crate) module: String,
    pub(crate) event: String,
    pub(crate) api_key: String,
    pub(crate) triggered_at: Option<String>,
    pub(crate) data: Value,
}

#[derive(Clone)]
pub(crate) struct Store {
    connection: Arc<Mutex<Connection>>,
}

pub(crate) type StoreError = Box<dyn std::error::Error + Send + Sync>;

impl Store {
    pub(crate) fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("marketplace-app.sqlite3");
        let connection = Connection::open(&path)?;
        // The database holds installations and events: this user's only (WAL files inherit).
        #[cfg(unix)]
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        connection.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS installations (
                 api_key TEXT PRIMARY KEY, status TEXT NOT NULL, event TEXT NOT NULL,
                 triggered_at TEXT, data TEXT NOT NULL, updated_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS events (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, api_key TEXT NOT NULL, event TEXT NOT NULL,
                 module TEXT NOT NULL, triggered_at TEXT, data TEXT NOT NULL, received_at INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS events_by_stack ON events (api_key, id);
             CREATE TABLE IF NOT EXISTS settings (tenant TEXT PRIMARY KEY, json TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS deliveries (
                 delivery_id TEXT PRIMARY KEY, received_at INTEGER NOT NULL);",
        )?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `f` on the connection off the async threads.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .map_err(|_| "the database lock is poisoned")?;
            f(&mut connection).map_err(StoreError::from)
        })
        .await?
    }

    /// Records a verified delivery once by its id: installation events keep the installation's
    /// record, every other event goes to its stack's log. `false`: the delivery was recorded
    /// before, and nothing changed.
    pub(crate) async fn record(&self, delivery: Delivery) -> Result<bool, StoreError> {
        let now = unix_now();
        self.with(move |db| {
            let Delivery { id, change, module, event, api_key, triggered_at, data } = delivery;
            let db = db.transaction()?;
            let new = db.execute(
                "INSERT INTO deliveries (delivery_id, received_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![id, now],
            )? == 1;
            if !new {
                return Ok(false);
            }
            let status = match change {
                Change::Installed => Some("installed"),
                Change::Uninstalled => Some("uninstalled"),
                Change::Logged => None,
            };
            if let Some(status) = status {
                db.execute(
                    "INSERT INTO installations (api_key, status, event, triggered_at, data, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(api_key) DO UPDATE SET status = ?2, event = ?3, triggered_at = ?4, data = ?5, updated_at = ?6",
                    params![api_key, status, event, triggered_at, data.to_string(), now],
                )?;
            } else {
                db.execute(
                    "INSERT INTO events (api_key, event, module, triggered_at, data, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![api_key, event, module, triggered_at, data.to_string(), now],
                )?;
            }
            db.commit()?;
            Ok(true)
        })
        .await
    }

    /// Whether the stack has a recorded installation that is not uninstalled: the app's
    /// tenants.
    pub(crate) async fn is_installed(&self, api_key: String) -> Result<bool, StoreError> {
        self.with(move |db| {
            db.query_row(
                "SELECT status FROM installations WHERE api_key = ?1",
                params![api_key],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .map(|status| status.as_deref() == Some("installed"))
        })
        .await
    }

    /// The stack's recent events, newest first.
    pub(crate) async fn events(
        &self,
        api_key: String,
        limit: u32,
    ) -> Result<Vec<Value>, StoreError> {
        self.with(move |db| {
            let mut statement = db.prepare(
                "SELECT event, module, triggered_at FROM events WHERE api_key = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![api_key, limit], |row| {
                Ok(json!({
                    "event": row.get::<_, String>(0)?,
                    "module": row.get::<_, String>(1)?,
                    "triggered_at": row.get::<_, Option<String>>(2)?,
                }))
            })?;
            rows.collect()
        })
        .await
    }

    /// The installation record of a stack, if any.
    pub(crate) async fn installation(&self, api_key: String) -> Result<Option<Value>, StoreError> {
        self.with(move |db| {
            db.query_row(
                "SELECT status, event, triggered_at FROM installations WHERE api_key = ?1",
                params![api_key],
                |row| {
                    Ok(json!({
                        "status": row.get::<_, String>(0)?,
                        "event": row.get::<_, String>(1)?,
                        "triggered_at": row.get::<_, Option<String>>(2)?,
                    }))
                },
            )
            .optional()
        })
        .await
    }

    pub(crate) async fn settings(&self, tenant: String) -> Result<Value, StoreError> {
        self.with(move |db| {
            let text: Option<String> = db
                .query_row(
                    "SELECT json FROM settings WHERE tenant = ?1",
                    params![tenant],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(text
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_else(|| json!({})))
        })
        .await
    }

    pub(crate) async fn save_settings(
        &self,
        tenant: String,
        settings: Value,
    ) -> Result<(), StoreError> {
        self.with(move |db| {
            db.execute(
                "INSERT INTO settings (tenant, json) VALUES (?1, ?2) ON CONFLICT(tenant) DO UPDATE SET json = ?2",
                params![tenant, settings.to_string()],
            )?;
            Ok(())
        })
        .await
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
