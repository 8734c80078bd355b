//! The examples' durable inbox: SQLite under `DATA_DIR` for one instance, or the fleet's
//! PostgreSQL with a spool of each instance's own while it is down.

use std::path::Path;

use axum::extract::Request;
use axum::response::Response;
use countersign_inbox::{
    DeadLetter, Inbox, InboxStats, PostgresInbox, Retried, Spool, SqliteInbox,
};
use tower::ServiceExt;

use crate::postgres::Error;

/// An inbox in SQLite or PostgreSQL.
#[derive(Clone)]
pub enum AnyInbox {
    /// One instance's.
    Sqlite(Inbox<SqliteInbox>),
    /// A fleet's.
    Postgres(Inbox<PostgresInbox>),
}

impl AnyInbox {
    /// The fleet's inbox in the table `table` of the database `pool` connects to (each app
    /// its own: the examples may share a database), with a spool under this instance's
    /// `data_dir` (`spool/<table>`, each app its own too) for while the database is down.
    ///
    /// # Errors
    /// When `table` is not a plain name, or the spool's directory cannot be made or read.
    pub fn postgres(
        pool: deadpool_postgres::Pool,
        table: &str,
        data_dir: &Path,
    ) -> Result<Self, Error> {
        let spool = Spool::open(data_dir.join("spool").join(table))?;
        Ok(Self::Postgres(
            Inbox::new(PostgresInbox::new(pool).with_table(table)?).with_spool(spool),
        ))
    }

    /// The inbox remembering handled deliveries for `horizon` at least (see
    /// [`Inbox::with_retry_horizon`]): as long as a reconciliation looks back.
    #[must_use]
    pub fn with_retry_horizon(self, horizon: std::time::Duration) -> Self {
        match self {
            Self::Sqlite(inbox) => Self::Sqlite(inbox.with_retry_horizon(horizon)),
            Self::Postgres(inbox) => Self::Postgres(inbox.with_retry_horizon(horizon)),
        }
    }

    /// Reconciles the inbox with a Contentstack webhook's executions (see
    /// [`Inbox::reconcile_contentstack`]).
    ///
    /// # Errors
    /// The records or the inbox could not be read.
    pub async fn reconcile_contentstack(
        &self,
        records: &countersign::reconcile::ContentstackRecords,
        webhook: &str,
        since: std::time::SystemTime,
        action: countersign_inbox::Action,
    ) -> Result<countersign_inbox::Report, countersign_inbox::ReconcileError> {
        match self {
            Self::Sqlite(inbox) => {
                inbox
                    .reconcile_contentstack(records, webhook, since, None, action)
                    .await
            }
            Self::Postgres(inbox) => {
                inbox
                    .reconcile_contentstack(records, webhook, since, None, action)
                    .await
            }
        }
    }

    /// Commits the verified delivery in `request` and answers it (see
    /// [`countersign_inbox::Acknowledge`]).
    pub async fn acknowledge(&self, request: Request) -> Response {
        let answer = match self {
            Self::Sqlite(inbox) => inbox.acknowledge().oneshot(request).await,
            Self::Postgres(inbox) => inbox.acknowledge().oneshot(request).await,
        };
        answer.unwrap_or_else(|never| match never {})
    }

    /// Starts `concurrency` workers handing each delivery to `handler` (see [`Inbox::work`]).
    #[must_use = "the workers stop when this is dropped"]
    pub fn work<H, F>(&self, concurrency: usize, handler: H) -> countersign_inbox::Workers
    where
        H: Fn(countersign_inbox::InboxDelivery) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), countersign_inbox::BoxError>> + Send + 'static,
    {
        match self {
            Self::Sqlite(inbox) => inbox.work(concurrency, handler),
            Self::Postgres(inbox) => inbox.work(concurrency, handler),
        }
    }

    /// Forgets the handled deliveries and dead letters past their time, now (see
    /// [`Inbox::purge`]). Returns how many it forgot.
    ///
    /// # Errors
    /// The store failed.
    pub async fn purge(&self) -> Result<u64, Error> {
        Ok(match self {
            Self::Sqlite(inbox) => inbox.purge().await?,
            Self::Postgres(inbox) => inbox.purge().await?,
        })
    }

    /// The dead letters of `tenant`, newest first, at most `limit`.
    ///
    /// # Errors
    /// The store failed.
    pub async fn dead_letters(&self, tenant: &str, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        Ok(match self {
            Self::Sqlite(inbox) => inbox.dead_letters(tenant, limit).await?,
            Self::Postgres(inbox) => inbox.dead_letters(tenant, limit).await?,
        })
    }

    /// Tries `tenant`'s dead letter `id` again.
    ///
    /// # Errors
    /// The store failed.
    pub async fn retry(&self, tenant: &str, id: &str) -> Result<Retried, Error> {
        Ok(match self {
            Self::Sqlite(inbox) => inbox.retry(tenant, id).await?,
            Self::Postgres(inbox) => inbox.retry(tenant, id).await?,
        })
    }

    /// How full the inbox is.
    ///
    /// # Errors
    /// The store failed.
    pub async fn stats(&self) -> Result<InboxStats, Error> {
        Ok(match self {
            Self::Sqlite(inbox) => inbox.stats().await?,
            Self::Postgres(inbox) => inbox.stats().await?,
        })
    }
}
