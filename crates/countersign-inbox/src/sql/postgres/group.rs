//! Group commit on PostgreSQL: the commits that arrive while one is on its way
//! ([`Batcher`](crate::batch::Batcher)) go in one statement, in one transaction with one WAL
//! flush (three round trips: `BEGIN`, the settings with the statement, `COMMIT`). Each member
//! is answered as it would have been alone: a duplicate of an earlier member is a duplicate,
//! and a tenant's limit counts the group's earlier rows. A group the database refuses is tried
//! member by member, so that one member's bytes (a tenant id PostgreSQL will not store, say)
//! fail that member alone.

use std::collections::HashMap;

use countersign_core::replay::{StoreError, StoreErrorKind};

use crate::delivery::{Commit, millis};
use crate::sql::{self, Pending};

use super::PostgresInbox;

/// The most commits in one group.
pub(super) const MOST: usize = 256;

/// A group's commits in one statement: each member's row unless its id is there (or an earlier
/// member's), or its tenant has its limit (`$8`, `i64::MAX` for none) waiting, counting the
/// group's earlier rows of the tenant; then, for each member in order, whether its id was
/// inserted and whether it was there before. Counts stop at the limit, and are made only for
/// the tenants whose members have one. Rows go in by id, so that two instances' groups that
/// share ids wait for each other rather than deadlock. The ids already there are looked up
/// once, by the primary key (`= ANY`): a correlated `EXISTS` was planned, in the statement's
/// cached generic plan, as a scan of the whole table.
const GROUP: &str = "
WITH input AS (
    SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BYTEA[], $5::TEXT[],
                         $6::BIGINT[], $7::BIGINT[], $8::BIGINT[])
        WITH ORDINALITY AS t(id, provider, tenant, body, signed_headers, received_at, expires_at,
                             cap, n)
),
known AS (
    SELECT k.id FROM countersign_inbox k WHERE k.id = ANY($1::TEXT[])
),
fresh AS (
    SELECT DISTINCT ON (i.id) i.* FROM input i
     WHERE i.id NOT IN (SELECT id FROM known)
     ORDER BY i.id, i.n
),
capped AS (
    SELECT tenant, max(cap) AS cap FROM fresh
     WHERE cap < 9223372036854775807 GROUP BY tenant
),
waiting AS (
    SELECT c.tenant, CASE WHEN c.tenant IS NULL
        THEN (SELECT count(*) FROM (SELECT 1 FROM countersign_inbox w
               WHERE w.tenant IS NULL AND w.state IN ('pending', 'leased') LIMIT c.cap) x)
        ELSE (SELECT count(*) FROM (SELECT 1 FROM countersign_inbox w
               WHERE w.tenant = c.tenant AND w.state IN ('pending', 'leased') LIMIT c.cap) x)
        END AS n
      FROM capped c
),
admitted AS (
    SELECT f.* FROM (
        SELECT f.*, ROW_NUMBER() OVER (PARTITION BY f.tenant ORDER BY f.n) AS place
          FROM fresh f) f
      LEFT JOIN waiting w ON w.tenant IS NOT DISTINCT FROM f.tenant
     WHERE f.cap = 9223372036854775807 OR f.place + coalesce(w.n, 0) <= f.cap
),
inserted AS (
    INSERT INTO countersign_inbox
        (id, provider, tenant, body, signed_headers, state, due_at, received_at, expires_at)
    SELECT id, provider, tenant, body, signed_headers, 'pending', received_at, received_at,
           expires_at
      FROM admitted ORDER BY id
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
SELECT i.id IN (SELECT id FROM inserted), i.id IN (SELECT id FROM known)
  FROM input i ORDER BY i.n";

/// Which of the ids `$1` are there now.
const THERE: &str = "SELECT id FROM countersign_inbox WHERE id = ANY($1::TEXT[])";

/// The group statements over `table`.
pub(super) struct Statements {
    commit: String,
    there: String,
}

impl Statements {
    pub(super) fn over(table: &str) -> Self {
        Self {
            commit: sql::for_table(GROUP, table, true),
            there: sql::for_table(THERE, table, true),
        }
    }
}

/// Commits `group`, each member answered as alone.
pub(super) async fn write(
    store: PostgresInbox,
    group: Vec<Pending>,
) -> Vec<Result<Commit, StoreError>> {
    if group.len() == 1 {
        return vec![store.commit_alone(&group[0]).await];
    }
    match in_one(&store, &group).await {
        Ok(answers) => answers,
        // In time or not at all: alone, each would wait as long again.
        Err(error) if error.kind() == StoreErrorKind::Timeout => vec![Err(error); group.len()],
        // Refused as a whole, nothing of it written: each alone, a few at a time, so that
        // the retries leave the pool's other connections to the workers.
        Err(_) => {
            let mut answers = Vec::with_capacity(group.len());
            for few in group.chunks(ALONE_AT_ONCE) {
                let mut alone = tokio::task::JoinSet::new();
                for (at, pending) in few.iter().enumerate() {
                    let (store, pending) = (store.clone(), pending.clone());
                    alone.spawn(async move { (at, store.commit_alone(&pending).await) });
                }
                let mut few: Vec<_> = alone.join_all().await;
                few.sort_by_key(|(at, _)| *at);
                answers.extend(few.into_iter().map(|(_, answer)| answer));
            }
            answers
        }
    }
}

/// How many members of a refused group are committed alone at once.
const ALONE_AT_ONCE: usize = 4;

/// `group` in one statement.
async fn in_one(
    store: &PostgresInbox,
    group: &[Pending],
) -> Result<Vec<Result<Commit, StoreError>>, StoreError> {
    let ids: Vec<&str> = group.iter().map(|p| p.delivery.id.as_str()).collect();
    let providers: Vec<&str> = group.iter().map(|p| p.delivery.provider.as_str()).collect();
    let tenants: Vec<Option<&str>> = group.iter().map(|p| p.delivery.tenant.as_deref()).collect();
    let bodies: Vec<&[u8]> = group.iter().map(|p| p.delivery.body.as_ref()).collect();
    let headers: Vec<&str> = group.iter().map(|p| p.signed_headers.as_str()).collect();
    let received: Vec<i64> = group
        .iter()
        .map(|p| millis(p.delivery.received_at))
        .collect();
    let expires: Vec<i64> = group.iter().map(|p| millis(p.expires_at)).collect();
    let caps: Vec<i64> = group.iter().map(Pending::limit).collect();
    let rows = store
        .with(|mut client| async move {
            let db = client.transaction().await?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                &ids, &providers, &tenants, &bodies, &headers, &received, &expires, &caps,
            ];
            let rows = super::indexed(&db, &store.own.group.commit, &params).await?;
            db.commit().await?;
            Ok(rows)
        })
        .await?;
    // Each member's answer by what the statement did, an id's later members by its first.
    let mut first: HashMap<&str, Commit> = HashMap::new();
    let mut answers = Vec::with_capacity(group.len());
    let mut unclear = Vec::new();
    if rows.len() != group.len() {
        return Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "the group's commit answered another count of rows",
        ));
    }
    for (pending, row) in group.iter().zip(&rows) {
        let id = pending.delivery.id.as_str();
        let answer = match first.get(id) {
            Some(Commit::New | Commit::Duplicate) => Some(Commit::Duplicate),
            Some(Commit::TenantFull) => Some(Commit::TenantFull),
            None => match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
                (true, _) => Some(Commit::New),
                (false, true) => Some(Commit::Duplicate),
                // Refused for its tenant's limit, or committed meanwhile by another instance.
                (false, false) => None,
            },
        };
        match answer {
            Some(answer) => {
                first.entry(id).or_insert(answer);
            }
            None => unclear.push(id),
        }
        answers.push(answer);
    }
    // The group is written: from here on, never tried again. A member left unclear by a
    // failed lookup fails alone (its sender spools it, and the spool finds it a duplicate).
    let there: Result<Vec<String>, StoreError> = if unclear.is_empty() {
        Ok(Vec::new())
    } else {
        store
            .with(|mut client| async move {
                let db = client.transaction().await?;
                let rows = super::indexed(&db, &store.own.group.there, &[&unclear]).await?;
                Ok(rows.iter().map(|row| row.get(0)).collect())
            })
            .await
    };
    Ok(group
        .iter()
        .zip(answers)
        .map(|(pending, answer)| match (answer, &there) {
            (Some(answer), _) => Ok(answer),
            (None, Ok(there)) if there.contains(&pending.delivery.id) => Ok(Commit::Duplicate),
            (None, Ok(_)) => Ok(Commit::TenantFull),
            (None, Err(error)) => Err(error.clone()),
        })
        .collect())
}
