//! Group commit: the commits that arrive while one is on its way to disk wait, then share one
//! transaction and one fsync. No timer: a delivery alone on an idle inbox is written at once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use countersign_core::replay::StoreError;

use crate::delivery::{Commit, InboxDelivery, millis};
use crate::sql;

use super::unavailable;

/// A commit waiting for its group.
pub(super) struct Pending {
    pub(super) delivery: InboxDelivery,
    pub(super) signed_headers: String,
    pub(super) expires_at: SystemTime,
    pub(super) tenant_limit: Option<u64>,
    pub(super) answer: oneshot::Sender<Result<Commit, StoreError>>,
}

/// The commits waiting, and whether a committer is writing a group now.
#[derive(Default)]
pub(super) struct Queue {
    waiting: Vec<Pending>,
    writing: bool,
}

/// Queues `pending` and, unless a committer is writing, becomes it: the group is written once
/// the connection is free, with every commit that arrived meanwhile.
pub(super) fn submit(
    queue: &Arc<Mutex<Queue>>,
    connection: &Arc<Mutex<Connection>>,
    sql: &Arc<sql::Statements>,
    durable: i64,
    pending: Pending,
) {
    let mut state = queue.lock().unwrap_or_else(PoisonError::into_inner);
    state.waiting.push(pending);
    if state.writing {
        return;
    }
    state.writing = true;
    drop(state);
    let (queue, connection, sql) = (Arc::clone(queue), Arc::clone(connection), Arc::clone(sql));
    tokio::task::spawn_blocking(move || write_groups(&queue, &connection, &sql, durable));
}

/// Writes groups until none waits.
fn write_groups(
    queue: &Mutex<Queue>,
    connection: &Mutex<Connection>,
    sql: &sql::Statements,
    durable: i64,
) {
    let _unwinding = Unwinding(queue);
    loop {
        // The connection first: what arrives while it is busy (a claim, the previous group)
        // joins this group.
        let mut db = connection.lock().unwrap_or_else(PoisonError::into_inner);
        let group = {
            let mut state = queue.lock().unwrap_or_else(PoisonError::into_inner);
            if state.waiting.is_empty() {
                state.writing = false;
                return;
            }
            std::mem::take(&mut state.waiting)
        };
        let answers = write_group(&mut db, sql, durable, &group);
        drop(db);
        for (pending, answer) in group.into_iter().zip(answers) {
            // A caller that stopped waiting has its delivery committed all the same.
            let _ = pending.answer.send(answer);
        }
    }
}

/// Should the committer panic, the commits waiting are failed (their senders spool them) and
/// the next commit becomes the committer: none waits for one that is gone.
struct Unwinding<'q>(&'q Mutex<Queue>);

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            state.writing = false;
            for pending in state.waiting.drain(..) {
                let _ = pending
                    .answer
                    .send(Err(unavailable("the inbox's committer failed")));
            }
        }
    }
}

/// One transaction for `group`, each member in a savepoint of its own, so that a member's
/// failure is its own; each is answered as it would have been alone (a duplicate of an earlier
/// member is a duplicate, a tenant's limit counts the group's earlier rows). Nothing is
/// answered before the transaction is on disk; when it cannot be, every member fails.
fn write_group(
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
    group.iter().map(|_| Err(unavailable(error))).collect()
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
    let limit = pending
        .tenant_limit
        .map_or(i64::MAX, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
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
