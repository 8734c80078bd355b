//! Group commit: the commits that arrive while one is on its way to disk
//! ([`Batcher`](crate::batch::Batcher)) share one transaction and one fsync.

use rusqlite::{Connection, OptionalExtension, params};

use countersign_core::replay::StoreError;

use crate::delivery::{Commit, millis};
use crate::sql::{self, Pending};

use super::unavailable;

/// The most commits in one group.
pub(super) const MOST: usize = 512;

/// One transaction for `group`; each member is answered as it would have been alone (a
/// duplicate of an earlier member is a duplicate, a tenant's limit counts the group's earlier
/// rows). A member's failure is its own: its one write is a statement, which SQLite rolls
/// back alone; an error that ends the whole transaction (a full disk, say) fails every member.
/// Nothing is answered before the transaction is on disk; when it cannot be, every member fails.
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
    let transaction = match db.transaction() {
        Ok(transaction) => transaction,
        Err(error) => return fail_all(group, &error),
    };
    let mut answers = Vec::with_capacity(group.len());
    for pending in group {
        match commit_one(&transaction, sql, pending) {
            Ok(commit) => answers.push(Ok(commit)),
            // The transaction itself is gone, and the members before with it.
            Err(error) if transaction.is_autocommit() => return fail_all(group, &error),
            Err(error) => answers.push(Err(unavailable(error))),
        }
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

/// One delivery's commit, unless its id is there or its tenant has its limit waiting: one
/// write, so that SQLite rolls back a failed member alone.
fn commit_one(
    db: &rusqlite::Transaction<'_>,
    sql: &sql::Statements,
    pending: &Pending,
) -> rusqlite::Result<Commit> {
    let delivery = &pending.delivery;
    // Counted up to the limit, and not at all without one.
    let limit = pending.limit();
    if limit < i64::MAX {
        // A duplicate is a duplicate, its tenant full or not.
        let known = db
            .prepare_cached(&sql.known)?
            .query_row([&delivery.id], |_| Ok(()))
            .optional()?
            .is_some();
        if known {
            return Ok(Commit::Duplicate);
        }
        let waiting: i64 = match &delivery.tenant {
            Some(tenant) => db
                .prepare_cached(&sql.waiting)?
                .query_row(params![tenant, limit], |row| row.get(0))?,
            None => db
                .prepare_cached(&sql.waiting_untenanted)?
                .query_row([limit], |row| row.get(0))?,
        };
        if waiting >= limit {
            return Ok(Commit::TenantFull);
        }
    }
    let inserted = db.prepare_cached(&sql.insert)?.execute(params![
        delivery.id,
        delivery.provider.as_str(),
        delivery.tenant,
        delivery.body.as_ref(),
        pending.signed_headers,
        millis(delivery.received_at),
        millis(pending.expires_at),
    ])?;
    Ok(if inserted == 1 {
        Commit::New
    } else {
        Commit::Duplicate
    })
}
