//! What the app received: every verified webhook and app event, once per delivery. In memory
//! (one instance, lost on restart, the latest [`MEMORY_CAPACITY`] only) or, with
//! `DATABASE_URL`, in PostgreSQL, which a fleet shares.
//!
//! A delivery answered 200 has been committed to the durable inbox ([`Records::inbox`]: SQLite
//! under `DATA_DIR`, or the fleet's PostgreSQL with a spool of this instance's own), and its
//! workers record it from there ([`Records::work`]). In PostgreSQL, the record is written in
//! the inbox's own transaction, so it is written exactly once; in memory, it is keyed by the
//! delivery's id (its signed idempotency key), so a second attempt changes nothing.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use countersign::contentful::{Action, Entity, Topic};
use countersign_inbox::{GiveUp, Inbox, InboxDelivery, SqliteInbox, Workers};
use example_support::inbox::AnyInbox;
use example_support::postgres::{Database, Error, Schema, bounded};
use serde_json::{Value, json};

/// How many deliveries one instance records at once.
const WORKERS: usize = 8;

/// The row of a delivery, once per delivery id.
const INSERT: &str = "INSERT INTO contentful_deliveries
    (delivery_id, space_id, environment_id, topic, handling, body, received_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (delivery_id) DO NOTHING";

/// What a verified webhook or app event asks of this app, by its signed topic.
pub(crate) fn handling(topic: Option<&Topic>) -> &'static str {
    let Some(topic) = topic else {
        return "untyped";
    };
    match (topic.entity(), topic.action()) {
        (Entity::Entry | Entity::Asset, Action::Publish | Action::Unpublish) => "content_changed",
        (Entity::Entry | Entity::Asset, Action::Delete) => "content_deleted",
        (Entity::AppInstallation, Action::Delete) => "uninstalled",
        (Entity::AppInstallation, _) => "installation_changed",
        // Recorded as such: nothing for this app to do.
        _ => "ignored",
    }
}

/// A failed write, logged in full for the operator; the dead letter says only what failed.
fn failed(error: impl std::fmt::Display) -> countersign_inbox::BoxError {
    tracing::warn!(%error, "recording a delivery failed; it will be tried again");
    "the database failed".into()
}

impl Received {
    /// The delivery a worker was handed: its tenant is the signed space (or the signed CRN's),
    /// its environment and topic the signed headers'. Only Contentful's.
    fn of(delivery: &InboxDelivery) -> Result<Self, GiveUp> {
        if delivery.provider != countersign_inbox::Provider::Contentful {
            return Err(GiveUp::new("not a Contentful delivery"));
        }
        let topic = delivery
            .signed_header("x-contentful-topic")
            .map(Topic::parse);
        Ok(Self {
            id: delivery.id.clone(),
            space_id: delivery.tenant.clone().unwrap_or_default(),
            environment_id: delivery
                .signed_header("x-contentful-environment-id")
                .unwrap_or("")
                .to_owned(),
            handling: handling(topic.as_ref()),
            topic: topic.as_ref().map(ToString::to_string),
            body: String::from_utf8_lossy(&delivery.body).into_owned(),
        })
    }
}

/// A verified delivery, as recorded.
pub(crate) struct Received {
    /// The delivery id: the same for every retry of it.
    pub(crate) id: String,
    pub(crate) space_id: String,
    pub(crate) environment_id: String,
    pub(crate) topic: Option<String>,
    pub(crate) handling: &'static str,
    pub(crate) body: String,
}

/// The schema in PostgreSQL. Its own migrations table: the marketplace example may share the
/// database.
const SCHEMA: Schema = Schema {
    table: "contentful_app_migrations",
    migrations: &[(
        1,
        "CREATE TABLE IF NOT EXISTS contentful_deliveries (
             seq BIGSERIAL PRIMARY KEY, delivery_id TEXT NOT NULL UNIQUE,
             space_id TEXT NOT NULL, environment_id TEXT NOT NULL, topic TEXT,
             handling TEXT NOT NULL, body TEXT NOT NULL, received_at BIGINT NOT NULL);
         CREATE INDEX IF NOT EXISTS contentful_deliveries_by_environment
             ON contentful_deliveries (space_id, environment_id, seq);",
    )],
};

#[derive(Clone)]
pub(crate) enum Records {
    Memory(Arc<Mutex<Memory>>),
    Postgres(Arc<Database>),
}

impl Received {
    /// The parameters of [`INSERT`].
    fn params<'a>(&'a self, now: &'a i64) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 7] {
        [
            &self.id,
            &self.space_id,
            &self.environment_id,
            &self.topic,
            &self.handling,
            &self.body,
            now,
        ]
    }
}

/// How many deliveries the in-memory records keep; the oldest go first.
pub(crate) const MEMORY_CAPACITY: usize = 10_000;

#[derive(Default)]
pub(crate) struct Memory {
    ids: HashSet<String>,
    /// `(sequence number, delivery)`, oldest first.
    received: VecDeque<(i64, Received)>,
    last_seq: i64,
}

impl Records {
    /// Records kept in this process.
    pub(crate) fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    /// Records in PostgreSQL at `url`; nothing is sent until the first request.
    pub(crate) fn postgres(url: &str) -> Result<Self, Error> {
        Ok(Self::Postgres(Arc::new(Database::connect(url, SCHEMA)?)))
    }

    /// The durable inbox the webhook routes answer from: the fleet's PostgreSQL (with a spool
    /// under `data_dir`), or SQLite under `data_dir`.
    pub(crate) fn inbox(&self, data_dir: &std::path::Path) -> Result<AnyInbox, Error> {
        Ok(match self {
            Self::Memory(_) => AnyInbox::Sqlite(Inbox::new(SqliteInbox::open(
                data_dir.join("inbox.sqlite3"),
            )?)),
            Self::Postgres(db) => {
                AnyInbox::postgres(db.pool().clone(), "contentful_app_inbox", data_dir)?
            }
        })
    }

    /// Starts the workers that record each delivery of `inbox`.
    pub(crate) fn work(&self, inbox: &AnyInbox) -> Workers {
        match (self, inbox) {
            (Self::Postgres(db), AnyInbox::Postgres(inbox)) => {
                let db = Arc::clone(db);
                inbox.work_in_transaction(WORKERS, move |tx, delivery| {
                    let db = Arc::clone(&db);
                    Box::pin(async move {
                        let received = Received::of(delivery)?;
                        // The app's table, before the first write to it.
                        db.migrated().await.map_err(failed)?;
                        tx.execute(INSERT, &received.params(&example_support::unix_now()))
                            .await
                            .map_err(failed)?;
                        Ok(())
                    })
                })
            }
            (records, inbox) => {
                let records = records.clone();
                let handle = move |delivery: InboxDelivery| {
                    let records = records.clone();
                    async move {
                        let received = Received::of(&delivery)?;
                        records.record(received).await.map(drop).map_err(failed)
                    }
                };
                match inbox {
                    AnyInbox::Sqlite(inbox) => inbox.work(WORKERS, handle),
                    AnyInbox::Postgres(inbox) => inbox.work(WORKERS, handle),
                }
            }
        }
    }

    /// Records `received` once by its id; `false`: it was recorded before.
    pub(crate) async fn record(&self, received: Received) -> Result<bool, Error> {
        match self {
            Self::Memory(memory) => {
                let mut memory = memory.lock().map_err(|_| "the records' lock is poisoned")?;
                if !memory.ids.insert(received.id.clone()) {
                    return Ok(false);
                }
                if memory.received.len() == MEMORY_CAPACITY
                    && let Some((_, oldest)) = memory.received.pop_front()
                {
                    memory.ids.remove(&oldest.id);
                }
                memory.last_seq += 1;
                let seq = memory.last_seq;
                memory.received.push_back((seq, received));
                Ok(true)
            }
            Self::Postgres(db) => {
                bounded(async {
                    let now = example_support::unix_now();
                    let inserted = db
                        .client()
                        .await?
                        .execute(INSERT, &received.params(&now))
                        .await?;
                    Ok(inserted == 1)
                })
                .await
            }
        }
    }

    /// The deliveries of one space environment in the order they were recorded: at most
    /// `limit` after the sequence number `after`. Each has `seq`, `topic`, `handling` and
    /// `body` (as received).
    pub(crate) async fn list(
        &self,
        space_id: String,
        environment_id: String,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Value>, Error> {
        let entry = |seq: i64, topic: Option<&str>, handling: &str, body: &str| json!({"seq": seq, "topic": topic, "handling": handling, "body": body});
        match self {
            Self::Memory(memory) => {
                let memory = memory.lock().map_err(|_| "the records' lock is poisoned")?;
                Ok(memory
                    .received
                    .iter()
                    .filter(|(seq, r)| {
                        *seq > after && r.space_id == space_id && r.environment_id == environment_id
                    })
                    .take(limit as usize)
                    .map(|(seq, r)| entry(*seq, r.topic.as_deref(), r.handling, &r.body))
                    .collect())
            }
            Self::Postgres(db) => {
                bounded(async {
                    let rows = db
                        .client()
                        .await?
                        .query(
                            "SELECT seq, topic, handling, body FROM contentful_deliveries
                             WHERE space_id = $1 AND environment_id = $2 AND seq > $3
                             ORDER BY seq LIMIT $4",
                            &[&space_id, &environment_id, &after, &i64::from(limit)],
                        )
                        .await?;
                    Ok(rows
                        .iter()
                        .map(|row| entry(row.get(0), row.get(1), row.get(2), row.get(3)))
                        .collect())
                })
                .await
            }
        }
    }
}
