//! Group commit: the commits that arrive while one is on its way to disk
//! ([`Batcher`](crate::batch::Batcher)) share one transaction and one fsync.

use rusqlite::{Connection, OptionalExtension, params};

use countersign_core::replay::StoreError;

use crate::delivery::{Commit, millis};
use crate::sql::{self, Pending};

use super::unavailable;

/// The most commits in one group.
pub(super) const MOST: usize = 512;

/// One transaction for `group`, each member in a savepoint of its own, so that a member's
/// failure is its own; each is answered as it would have been alone (a duplicate of an earlier
/// member is a duplicate, a tenant's limit counts the group's earlier rows). Nothing is
/// answered before the transaction is on disk; when it cannot be, every member fails.
pub(super) fn write(
    db: &mut Connection,
    sql: &sql::Statements,
    durable: i64,
    group: &[Pending],
) -> Vec<Result<Commit, StoreError>> {
    // At the durable level whatever the bookkeeping before left, or not at all.
    let level = super::synchronous(db).and_then(|level| {
        if level < durable {
            super::set_synchronous(db, durable)?;
        }
        Ok(level.max(durable))
    });
    if let Err(error) = level {
        return fail_all(group, &error);
    }
    let mut transaction = match db.transaction() {
        Ok(transaction) => transaction,
        Err(error) => return fail_all(group, &error),
    };
    let mut answers = Vec::with_capacity(group.len());
    for pending in group {
        let answer = transaction
            .savepoint()
            .and_then(|member| {
                let commit = commit_one(&member, sql, pending)?;
                member.commit()?;
                Ok(commit)
            })
            .map_err(unavailable);
        answers.push(answer);
    }
    match transaction.commit() {
        Ok(()) => answers,
        Err(error) => fail_all(group, &error),
    }
}

/// Every member of `group` failed with `error`: none of it reached the disk.
fn fail_all(group: &[Pending], error: &rusqlite::Error) -> Vec<Result<Commit, StoreError>> {
    failed(group.len(), error)
}

/// Each of `members` failed with `error`.
pub(super) fn failed(
    members: usize,
    error: impl std::fmt::Display,
) -> Vec<Result<Commit, StoreError>> {
    vec![Err(unavailable(error)); members]
}

/// One delivery's commit, unless its id is there or its tenant has its limit waiting.
fn commit_one(
    db: &rusqlite::Savepoint<'_>,
    sql: &sql::Statements,
    pending: &Pending,
) -> rusqlite::Result<Commit> {
    let delivery = &pending.delivery;
    let known = db
        .query_row(&sql.known, [&delivery.id], |_| Ok(()))
        .optional()?
        .is_some();
    if known {
        return Ok(Commit::Duplicate);
    }
    // Counted up to the limit, and not at all without one.
    let limit = pending.limit();
    if limit < i64::MAX {
        let waiting: i64 = match &delivery.tenant {
            Some(tenant) => db.query_row(&sql.waiting, params![tenant, limit], |row| row.get(0))?,
            None => db.query_row(&sql.waiting_untenanted, [limit], |row| row.get(0))?,
        };
        if waiting >= limit {
            return Ok(Commit::TenantFull);
        }
    }
    db.execute(
        &sql.insert,
        params![
            delivery.id,
            delivery.provider.as_str(),
            delivery.tenant,
            delivery.body.as_ref(),
            pending.signed_headers,
            millis(delivery.received_at),
            millis(pending.expires_at),
        ],
    )?;
    Ok(Commit::New)
}
