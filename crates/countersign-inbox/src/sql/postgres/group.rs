//! Group commit on PostgreSQL: the commits that arrive while one is on its way
//! ([`Batcher`](crate::batch::Batcher)) go in one statement, in one transaction with one WAL
//! flush, in one round trip (`BEGIN` and the settings, the statement and `COMMIT` sent
//! together). Each member is answered as it would have been alone: a duplicate of an earlier
//! member is a duplicate, and a tenant's limit counts the group's earlier rows. A group the database refuses is tried
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
///
/// A member with a lease offered (`$9`, its end `$10`, its tenants' concurrency `$11`) goes in
/// leased for its first attempt, rather than pending, when a claim would take it at once:
/// nothing is due before it (pending and due, or on a lapsed lease), and its tenant's live
/// leases (counted up to the concurrency), with the group's members leased before it, stay
/// within the concurrency. Then a worker of this instance runs it, and no claim has to find
/// it. "Now" is the latest receipt among the members.
const GROUP: &str = "
WITH input AS (
    SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BYTEA[], $5::TEXT[],
                         $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], $9::TEXT[], $10::BIGINT[],
                         $11::BIGINT[])
        WITH ORDINALITY AS t(id, provider, tenant, body, signed_headers, received_at, expires_at,
                             cap, lease, lease_until, concurrency, n)
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
offered AS (
    SELECT a.id, a.tenant, a.lease, a.lease_until, a.concurrency,
           ROW_NUMBER() OVER (PARTITION BY a.tenant ORDER BY a.n) AS place
      FROM admitted a
     WHERE a.lease IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM countersign_inbox d
                        WHERE d.state IN ('pending', 'leased')
                          AND d.due_at <= (SELECT max(received_at) FROM input))
),
live AS (
    SELECT o.tenant, CASE WHEN o.tenant IS NULL
        THEN (SELECT count(*) FROM (SELECT 1 FROM countersign_inbox w
               WHERE w.tenant IS NULL AND w.state = 'leased'
                 AND w.due_at > (SELECT max(received_at) FROM input) LIMIT o.cap) x)
        ELSE (SELECT count(*) FROM (SELECT 1 FROM countersign_inbox w
               WHERE w.tenant = o.tenant AND w.state = 'leased'
                 AND w.due_at > (SELECT max(received_at) FROM input) LIMIT o.cap) x)
        END AS n
      FROM (SELECT tenant, max(concurrency) AS cap FROM offered GROUP BY tenant) o
),
leased AS (
    SELECT o.id, o.lease, o.lease_until FROM offered o
      LEFT JOIN live l ON l.tenant IS NOT DISTINCT FROM o.tenant
     WHERE o.place + coalesce(l.n, 0) <= o.concurrency
),
inserted AS (
    INSERT INTO countersign_inbox
        (id, provider, tenant, body, signed_headers, state, due_at, received_at, expires_at,
         lease_owner, attempts)
    SELECT a.id, a.provider, a.tenant, a.body, a.signed_headers,
           CASE WHEN l.id IS NULL THEN 'pending' ELSE 'leased' END,
           coalesce(l.lease_until, a.received_at), a.received_at, a.expires_at, l.lease,
           CASE WHEN l.id IS NULL THEN 0 ELSE 1 END
      FROM admitted a LEFT JOIN leased l ON l.id = a.id ORDER BY a.id
    ON CONFLICT (id) DO NOTHING
    RETURNING id, state
)
SELECT i.id IN (SELECT id FROM inserted), i.id IN (SELECT id FROM known),
       i.id IN (SELECT id FROM inserted WHERE state = 'leased')
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

/// A member's answer: its commit, and whether it went in leased to the lease it offered.
pub(super) type Answer = Result<(Commit, bool), StoreError>;

/// Commits `group`, each member answered as alone.
pub(super) async fn write(store: PostgresInbox, group: Vec<Pending>) -> Vec<Answer> {
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
async fn in_one(store: &PostgresInbox, group: &[Pending]) -> Result<Vec<Answer>, StoreError> {
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
    let leases: Vec<Option<&str>> = group
        .iter()
        .map(|p| p.lease.as_ref().map(|(lease, _, _)| lease.as_str()))
        .collect();
    let lease_until: Vec<i64> = group
        .iter()
        .map(|p| p.lease.as_ref().map_or(0, |(_, until, _)| *until))
        .collect();
    let concurrency: Vec<i64> = group
        .iter()
        .map(|p| {
            p.lease
                .as_ref()
                .map_or(0, |(_, _, concurrency)| *concurrency)
        })
        .collect();
    let rows = store
        .with(|client| async move {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
                &ids,
                &providers,
                &tenants,
                &bodies,
                &headers,
                &received,
                &expires,
                &caps,
                &leases,
                &lease_until,
                &concurrency,
            ];
            super::indexed(&client, &store.own.group.commit, &params).await
        })
        .await?;
    // Each member's answer by what the statement did, an id's later members by its first.
    let mut first: HashMap<&str, Commit> = HashMap::new();
    let mut answers = Vec::with_capacity(group.len());
    let mut leased = Vec::with_capacity(group.len());
    let mut unclear = Vec::new();
    if rows.len() != group.len() {
        return Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "the group's commit answered another count of rows",
        ));
    }
    for (pending, row) in group.iter().zip(&rows) {
        let id = pending.delivery.id.as_str();
        leased.push(row.get::<_, bool>(2));
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
            .with(|client| async move {
                let rows = super::indexed(&client, &store.own.group.there, &[&unclear]).await?;
                Ok(rows.iter().map(|row| row.get(0)).collect())
            })
            .await
    };
    Ok(group
        .iter()
        .zip(answers)
        .zip(leased)
        .map(|((pending, answer), leased)| match (answer, &there) {
            (Some(answer), _) => Ok((answer, leased && answer == Commit::New)),
            (None, Ok(there)) if there.contains(&pending.delivery.id) => {
                Ok((Commit::Duplicate, false))
            }
            (None, Ok(_)) => Ok((Commit::TenantFull, false)),
            (None, Err(error)) => Err(error.clone()),
        })
        .collect())
}
