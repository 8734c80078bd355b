//! What the SQL stores share: each statement written once, with SQLite's `?N` parameters
//! ([`postgres`] gives PostgreSQL's `$N`), and the rows read back into the inbox's types. Only
//! the schema and the claim differ between the two. Every limit here, and in SQLite's claim,
//! is bound as `CAST(?N AS BIGINT)`: SQLite compiles a statement with a bare `LIMIT ?N` again
//! before every run.

#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use std::time::SystemTime;

use countersign_core::Provider;

use crate::delivery::{DeadLetter, InboxDelivery, InboxStats, from_millis};

/// The most bytes of bodies in one group of commits: a larger delivery goes alone, and no
/// tenant's large bodies hold the others' commits for long.
pub(crate) const MOST_GROUP_BYTES: usize = 8 << 20;

/// A commit waiting for its group ([`Batcher`](crate::batch::Batcher)).
#[derive(Clone)]
pub(crate) struct Pending {
    pub(crate) delivery: InboxDelivery,
    /// The delivery's signed headers, as the store keeps them (JSON).
    pub(crate) signed_headers: String,
    pub(crate) expires_at: SystemTime,
    pub(crate) tenant_limit: Option<u64>,
    /// The first attempt's lease (`{owner}:1`), its end and the tenants' concurrency, when
    /// a free worker of this instance offers to take the delivery in the same write.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) lease: Option<(String, i64, i64)>,
}

impl Pending {
    /// The commit of `delivery`, or the error of encoding its headers.
    pub(crate) fn new(
        delivery: &InboxDelivery,
        expires_at: SystemTime,
        tenant_limit: Option<u64>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            signed_headers: serde_json::to_string(&delivery.signed_headers)?,
            delivery: delivery.clone(),
            expires_at,
            tenant_limit,
            lease: None,
        })
    }

    /// The same commit, with `offer` of its first attempt's lease.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn offering(mut self, offer: crate::delivery::LeaseOffer<'_>) -> Self {
        let concurrency = i64::try_from(offer.tenant_concurrency).unwrap_or(i64::MAX);
        self.lease = Some((
            offer.lease.to_owned(),
            crate::delivery::millis(offer.lease_until),
            concurrency,
        ));
        self
    }

    /// What it weighs in a group: its body and headers.
    pub(crate) fn weight(&self) -> usize {
        self.delivery.body.len() + self.signed_headers.len()
    }

    /// The tenant's limit as the databases count it: `i64::MAX` for none.
    pub(crate) fn limit(&self) -> i64 {
        self.tenant_limit
            .map_or(i64::MAX, |limit| i64::try_from(limit).unwrap_or(i64::MAX))
    }
}

/// Whether the delivery is there.
pub(crate) const KNOWN: &str = "SELECT 1 FROM countersign_inbox WHERE id = ?1";

/// A tenant's deliveries waiting (`tenant = ?1`, which an index serves), counted up to `?2`.
pub(crate) const WAITING: &str = "SELECT count(*) FROM (SELECT 1 FROM countersign_inbox
  WHERE tenant = ?1 AND state IN ('pending', 'leased') LIMIT CAST(?2 AS BIGINT))";

/// The deliveries of no tenant waiting, counted up to `?1`.
pub(crate) const WAITING_UNTENANTED: &str = "SELECT count(*) FROM (SELECT 1 FROM countersign_inbox
  WHERE tenant IS NULL AND state IN ('pending', 'leased') LIMIT CAST(?1 AS BIGINT))";

/// A new delivery, due at once.
pub(crate) const INSERT: &str = "INSERT INTO countersign_inbox
    (id, provider, tenant, body, signed_headers, state, due_at, received_at, expires_at)
  VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?7)
  ON CONFLICT (id) DO NOTHING";

/// A delivery set aside as a dead letter kept until `?7`, with the note `?8`, unless its id is
/// there ([`InboxStore::set_aside`](crate::WorkerStore::set_aside)).
pub(crate) const SET_ASIDE: &str = "INSERT INTO countersign_inbox
    (id, provider, tenant, body, signed_headers, state, due_at, received_at, expires_at,
     last_error)
  VALUES (?1, ?2, ?3, ?4, ?5, 'dead', ?7, ?6, ?7, ?8)
  ON CONFLICT (id) DO NOTHING";

/// A delivery whose worker died on its last attempt is a dead letter, not taken again.
/// It keeps its lease, so that a late success of that attempt is still recorded ([`COMPLETE`]).
pub(crate) const BURY: &str = "UPDATE countersign_inbox
   SET state = 'dead', expires_at = ?3, due_at = ?3,
       last_error = 'its worker stopped during the last attempt (the lease lapsed)'
 WHERE state = 'leased' AND due_at <= ?1 AND attempts >= ?2";

/// A lease extended, if it is still the delivery's.
pub(crate) const RENEW: &str = "UPDATE countersign_inbox SET due_at = ?3
  WHERE id = ?1 AND lease_owner = ?2 AND state = 'leased'";

/// Handled: the id alone answers a replay now, so the body goes. A dead letter buried while
/// this very attempt still ran (its lease lapsed on the last attempt) is handled too: left
/// dead, a retry would run it a second time. The lease stays, so that the same attempt
/// marking it again (its first write landed, but its answer was lost) finds it its own.
pub(crate) const COMPLETE: &str = "UPDATE countersign_inbox
    SET state = 'done', due_at = expires_at, body = NULL, signed_headers = NULL,
        last_error = NULL
  WHERE id = ?1 AND lease_owner = ?2 AND state IN ('leased', 'dead', 'done')";

/// A failed attempt: due again at `?4`, or (`?4` null) a dead letter kept until `?5`.
pub(crate) const FAIL: &str = "UPDATE countersign_inbox
    SET state = CASE WHEN CAST(?4 AS BIGINT) IS NULL THEN 'dead' ELSE 'pending' END,
        due_at = coalesce(CAST(?4 AS BIGINT), ?5), lease_owner = NULL, last_error = ?3,
        expires_at = CASE WHEN CAST(?4 AS BIGINT) IS NULL THEN ?5 ELSE expires_at END
  WHERE id = ?1 AND lease_owner = ?2 AND state = 'leased'";

/// The dead letters of tenant `?1` (every tenant's when null), newest first.
pub(crate) const DEAD_LETTERS: &str =
    "SELECT id, provider, tenant, attempts, last_error, received_at
   FROM countersign_inbox
  WHERE state = 'dead' AND (CAST(?1 AS TEXT) IS NULL OR tenant = ?1)
  ORDER BY received_at DESC, id LIMIT CAST(?2 AS BIGINT)";

/// A dead letter of tenant `?2` (any tenant's when null) due again, its attempts afresh,
/// unless its tenant has `?4` deliveries waiting already.
pub(crate) const RETRY: &str =
    "UPDATE countersign_inbox SET state = 'pending', due_at = ?3, attempts = 0, lease_owner = NULL
  WHERE id = ?1 AND state = 'dead' AND (CAST(?2 AS TEXT) IS NULL OR tenant = ?2)
    AND (SELECT count(*) FROM countersign_inbox w
          WHERE w.tenant = countersign_inbox.tenant
            AND w.state IN ('pending', 'leased')) < CAST(?4 AS BIGINT)";

/// The tenants with at least `?1` deliveries waiting (null: those of no tenant).
pub(crate) const CROWDED: &str = "SELECT tenant FROM countersign_inbox
  WHERE state IN ('pending', 'leased') GROUP BY tenant HAVING count(*) >= ?1";

/// Whether `?1` is a dead letter of tenant `?2` (any tenant's when null).
pub(crate) const DEAD: &str = "SELECT 1 FROM countersign_inbox
  WHERE id = ?1 AND state = 'dead' AND (CAST(?2 AS TEXT) IS NULL OR tenant = ?2)";

/// The most rows one transaction of a purge forgets: a purge of more (the first after a long
/// busy spell, or a burst of an hour ago) goes in several, each well within an operation's
/// time. (In one statement, a purge of more than a few seconds' work ran out of time, was
/// rolled back, and found more to do the next time.)
pub(crate) const PURGE_BATCH: i64 = 5_000;

/// The most bytes of bodies one transaction of a purge forgets (dead letters keep theirs, up
/// to the body limit each): one row at least.
pub(crate) const PURGE_BATCH_BYTES: i64 = 64 << 20;

/// Up to `?2` handled deliveries and dead letters past their time, found by the index of
/// states (their `due_at` is their `expires_at`; a row of an earlier build may have an
/// earlier `due_at`, and is read but kept until `expires_at`): each id and its body's bytes.
pub(crate) const PURGEABLE: &str = "SELECT id, CAST(coalesce(length(body), 0) AS BIGINT)
   FROM countersign_inbox
  WHERE state IN ('done', 'dead') AND due_at <= ?1 AND expires_at <= ?1 LIMIT CAST(?2 AS BIGINT)";

/// The deliveries of the JSON array `?1` of ids that are still past their time at `?2`
/// (a dead letter retried meanwhile is not: the conditions are checked again on the row as
/// it is now, never only on the candidates read before): the `received_at` of each. Found by
/// id: the `+` keeps SQLite off the index of states, which it took (and walked every row
/// past its time, in each batch).
pub(crate) const PURGE: &str = "DELETE FROM countersign_inbox
  WHERE id IN (SELECT value FROM json_each(?1))
    AND +state IN ('done', 'dead') AND +due_at <= ?2 AND +expires_at <= ?2
  RETURNING received_at";

/// [`PURGE`] in PostgreSQL's words: `?1` an array of ids (the `coalesce`s keep the planner
/// off the index of states, as in the claim).
const PURGE_POSTGRES: &str = "DELETE FROM countersign_inbox
  WHERE id = ANY (?1::TEXT[])
    AND coalesce(state, '') IN ('done', 'dead') AND coalesce(due_at, 0) <= ?2
    AND coalesce(expires_at, 0) <= ?2
  RETURNING received_at";

/// Which of a purge's candidates (`(id, body bytes)` as [`PURGEABLE`] read them, in order)
/// one transaction forgets: until their bodies pass [`PURGE_BATCH_BYTES`], one at least; and
/// whether more may be due after them.
pub(crate) fn purge_batch(candidates: Vec<(String, i64)>) -> (Vec<String>, bool) {
    let read = candidates.len();
    let mut bytes = 0i64;
    let mut ids = Vec::with_capacity(read);
    for (id, size) in candidates {
        let more = bytes.saturating_add(size.max(0));
        if !ids.is_empty() && more > PURGE_BATCH_BYTES {
            break;
        }
        bytes = more;
        ids.push(id);
    }
    let full = i64::try_from(read).unwrap_or(i64::MAX) >= PURGE_BATCH;
    let more = full || ids.len() < read;
    (ids, more)
}

/// After [`PURGE`], in its transaction: the latest `received_at` among the rows it forgot
/// (`?1`), kept as the inbox's high-water mark of forgotten ids (a reconciliation commits
/// nothing from before it, whatever the retry horizon was when those rows were committed).
/// Taken from the rows the purge returned, so that it covers exactly those.
pub(crate) const MARK_PURGED: &str = "INSERT INTO countersign_inbox_purged (id, up_to)
  VALUES (1, ?1)
  ON CONFLICT (id) DO UPDATE SET up_to = CASE
    WHEN excluded.up_to > countersign_inbox_purged.up_to THEN excluded.up_to
    ELSE countersign_inbox_purged.up_to END";

/// The high-water mark of forgotten ids ([`MARK_PURGED`]).
pub(crate) const PURGED_UP_TO: &str = "SELECT up_to FROM countersign_inbox_purged WHERE id = 1";

/// Each state's deliveries and its oldest, but the handled ones'. The states are named, so
/// that the index of states serves it: `state != 'done'` read the whole table, every
/// delivery kept for duplicates (an hour's or more), each time the workers measure the inbox.
pub(crate) const STATS: &str = "SELECT state, count(*), min(received_at) FROM countersign_inbox
  WHERE state IN ('pending', 'leased', 'dead') GROUP BY state";

/// What the claim returns of each delivery, in this order ([`delivery`] reads it).
pub(crate) const CLAIMED: &str =
    "id, provider, tenant, body, signed_headers, attempts, received_at";

/// The schema: one row per delivery. `due_at` is when a pending delivery may be taken, when a
/// leased one's lease ends, or (a handled one, a dead letter) `expires_at`, when it is
/// forgotten: so that the purge reads, through the index of states, only what it removes. In SQLite's
/// words; PostgreSQL's body is `BYTEA` ([`Statements::new`]).
///
/// Every index that a tenant's pending deliveries can be read from gives them in the claim's
/// order (`due_at, id`). Without statistics (a new table, or a backlog grown since the last
/// `ANALYZE`), PostgreSQL's cached plan took whichever index looked smaller, and one that did
/// not keep that order made each claim sort the tenant's whole backlog. (An inbox made by an
/// earlier, unreleased build also has `{table}_tenant`, of `(tenant, state)`: drop it.)
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS countersign_inbox (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    tenant TEXT,
    body BLOB,
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
CREATE INDEX IF NOT EXISTS countersign_inbox_tenant_due
    ON countersign_inbox (tenant, state, due_at, id);
CREATE INDEX IF NOT EXISTS countersign_inbox_pending ON countersign_inbox (tenant, due_at, id)
    WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS countersign_inbox_purged (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    up_to BIGINT NOT NULL
);
";

/// The table every statement names, unless the store was given another.
pub(crate) const DEFAULT_TABLE: &str = "countersign_inbox";

/// Every statement of one store, over its table and in its database's dialect: written once
/// above, made once when the store is.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) schema: String,
    pub(crate) claim: String,
    pub(crate) known: String,
    // SQLite's commit counts and inserts in steps; PostgreSQL's is one statement of its own.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) waiting: String,
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) waiting_untenanted: String,
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) insert: String,
    pub(crate) set_aside: String,
    pub(crate) bury: String,
    pub(crate) renew: String,
    pub(crate) complete: String,
    pub(crate) fail: String,
    pub(crate) dead_letters: String,
    pub(crate) retry: String,
    pub(crate) dead: String,
    pub(crate) crowded: String,
    pub(crate) purgeable: String,
    pub(crate) purge: String,
    pub(crate) mark_purged: String,
    pub(crate) purged_up_to: String,
    pub(crate) stats: String,
}

impl Statements {
    /// The statements over `table` (checked by [`table_name`]); `postgres` turns `?N` into
    /// `$N` and the body's `BLOB` into `BYTEA`. `claim` is the dialect's own.
    pub(crate) fn new(table: &str, postgres: bool, claim: &str) -> Self {
        let make = |sql: &str| for_table(sql, table, postgres);
        let schema = if postgres {
            SCHEMA.replace(" BLOB,", " BYTEA,")
        } else {
            SCHEMA.to_owned()
        };
        Self {
            schema: make(&schema),
            claim: make(claim),
            known: make(KNOWN),
            waiting: make(WAITING),
            waiting_untenanted: make(WAITING_UNTENANTED),
            insert: make(INSERT),
            set_aside: make(SET_ASIDE),
            bury: make(BURY),
            renew: make(RENEW),
            complete: make(COMPLETE),
            fail: make(FAIL),
            dead_letters: make(DEAD_LETTERS),
            retry: make(RETRY),
            dead: make(DEAD),
            crowded: make(CROWDED),
            purgeable: make(PURGEABLE),
            purge: make(if postgres { PURGE_POSTGRES } else { PURGE }),
            mark_purged: make(MARK_PURGED),
            purged_up_to: make(PURGED_UP_TO),
            stats: make(STATS),
        }
    }
}

/// `sql` over `table`; `postgres` turns `?N` into `$N`.
pub(crate) fn for_table(sql: &str, table: &str, postgres: bool) -> String {
    let sql = sql.replace(DEFAULT_TABLE, table);
    if postgres { sql.replace('?', "$") } else { sql }
}

/// `table`, when it is a plain lower-case SQL name of at most 48 bytes (its indexes add a
/// suffix, and PostgreSQL keeps 63).
///
/// # Errors
/// When it is not.
#[cfg(any(feature = "postgres", test))]
pub(crate) fn table_name(table: &str) -> Result<&str, countersign_core::ConfigError> {
    let mut bytes = table.bytes();
    let plain = bytes
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && table.len() <= 48;
    if plain {
        Ok(table)
    } else {
        Err(countersign_core::ConfigError::new(
            countersign_core::ConfigErrorKind::InvalidSetting,
            "an inbox table's name is 1 to 48 of a-z, 0-9 and _, not starting with a digit",
        ))
    }
}

/// The columns of [`CLAIMED`], in order.
pub(crate) type ClaimedRow = (
    String,
    String,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
    i64,
    i64,
);

/// The columns of [`DEAD_LETTERS`], in order.
pub(crate) type DeadLetterRow = (String, String, Option<String>, i64, Option<String>, i64);

/// A claimed row ([`CLAIMED`]).
pub(crate) fn delivery(
    (id, provider, tenant, body, signed_headers, attempts, received_at): ClaimedRow,
) -> InboxDelivery {
    InboxDelivery {
        id,
        provider: Provider::from_name(&provider).unwrap_or(Provider::Contentstack),
        tenant,
        body: body.unwrap_or_default().into(),
        signed_headers: signed_headers
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
        attempt: u32::try_from(attempts).unwrap_or(0),
        received_at: from_millis(received_at),
    }
}

/// A row of [`DEAD_LETTERS`].
pub(crate) fn dead_letter(
    (id, provider, tenant, attempts, last_error, received_at): DeadLetterRow,
) -> DeadLetter {
    DeadLetter {
        id,
        provider: Provider::from_name(&provider).unwrap_or(Provider::Contentstack),
        tenant,
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_error,
        received_at: from_millis(received_at),
    }
}

/// The rows of [`STATS`].
pub(crate) fn stats(rows: impl IntoIterator<Item = (String, i64, i64)>) -> InboxStats {
    let mut stats = InboxStats::default();
    for (state, count, oldest) in rows {
        let count = u64::try_from(count).unwrap_or(0);
        match state.as_str() {
            "pending" => stats.pending = count,
            "leased" => stats.leased = count,
            _ => stats.dead = count,
        }
        if state != "dead" {
            let oldest: SystemTime = from_millis(oldest);
            stats.oldest_unhandled = Some(stats.oldest_unhandled.map_or(oldest, |o| o.min(oldest)));
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_batch_stops_at_its_bytes_with_one_row_at_least() {
        let rows = |sizes: &[i64]| -> Vec<(String, i64)> {
            sizes
                .iter()
                .enumerate()
                .map(|(n, size)| (format!("r{n}"), *size))
                .collect()
        };
        let mib = 1 << 20;
        // Handled ones keep no body: all of them, and no more due.
        assert_eq!(
            purge_batch(rows(&[0; 10])),
            ((0..10).map(|n| format!("r{n}")).collect(), false)
        );
        // Dead letters up to 64 MiB of bodies; the rest next time.
        let (ids, more) = purge_batch(rows(&[30 * mib, 30 * mib, 30 * mib]));
        assert_eq!((ids.len(), more), (2, true));
        // One larger than the budget goes alone.
        let (ids, more) = purge_batch(rows(&[100 * mib, 0]));
        assert_eq!((ids, more), (vec!["r0".to_owned()], true));
        // A full read may have more behind it.
        let full = usize::try_from(PURGE_BATCH).unwrap();
        assert!(purge_batch(rows(&vec![0; full])).1);
        assert_eq!(purge_batch(Vec::new()), (Vec::new(), false));
    }

    #[test]
    fn a_table_name_is_a_plain_name_and_replaces_the_default_everywhere() {
        for good in ["contentful_app_inbox", "_inbox", "inbox2"] {
            assert_eq!(table_name(good).unwrap(), good);
        }
        let too_long = "a".repeat(49);
        for bad in [
            "",
            "2inbox",
            "Inbox",
            "inbox; DROP TABLE x",
            "in-box",
            "\"inbox\"",
            &too_long,
        ] {
            assert!(table_name(bad).is_err(), "{bad}");
        }
        let sql = Statements::new("app_inbox", true, "");
        assert!(
            sql.schema
                .contains("CREATE TABLE IF NOT EXISTS app_inbox (")
        );
        assert!(sql.schema.contains("body BYTEA,"));
        assert!(sql.schema.contains("ON app_inbox (state, due_at)"));
        assert!(sql.insert.starts_with("INSERT INTO app_inbox"));
        assert!(sql.insert.contains("$7") && !sql.insert.contains('?'));
        for statement in [&sql.known, &sql.bury, &sql.stats, &sql.purge, &sql.fail] {
            assert!(!statement.contains(DEFAULT_TABLE), "{statement}");
        }
    }
}
