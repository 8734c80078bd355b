//! What the app received: every verified webhook and app event, once per delivery. In memory
//! (one instance, lost on restart, the latest [`MEMORY_CAPACITY`] only) or, with
//! `DATABASE_URL`, in PostgreSQL, which a fleet shares.
//!
//! A delivery answered 200 has been recorded, once: the record is keyed by the delivery's id
//! (its signed idempotency key), so a retry that reaches another instance, or this one after
//! the replay store lost its state, changes nothing. When PostgreSQL cannot be reached the
//! routes answer 503, so that Contentful retries.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use example_support::postgres::{Database, Error, Schema, bounded};
use serde_json::{Value, json};

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
                    let inserted = db
                        .client()
                        .await?
                        .execute(
                            "INSERT INTO contentful_deliveries
                             (delivery_id, space_id, environment_id, topic, handling, body, received_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (delivery_id) DO NOTHING",
                            &[
                                &received.id,
                                &received.space_id,
                                &received.environment_id,
                                &received.topic,
                                &received.handling,
                                &received.body,
                                &example_support::unix_now(),
                            ],
                        )
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
