//! PostgreSQL for a fleet of example instances: a pool that outlives server restarts, numbered
//! migrations run once (instances that start together take turns), and a bound on every
//! operation so that a paused or unreachable server answers 503 in time rather than holding a
//! delivery past the provider's timeout.

use std::time::Duration;

/// What a database operation fails with.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The longest one database operation may take: a paused or unreachable server answers 503
/// rather than holding the request past Contentstack's 30 s.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// An app's schema: the numbered steps (`(version, SQL)`, in order) and the table that
/// remembers which ran. Two apps may share one database as long as their tables differ.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The table that remembers which steps ran (`version BIGINT PRIMARY KEY`).
    pub table: &'static str,
    /// The steps, by version.
    pub migrations: &'static [(i64, &'static str)],
}

pub use countersign_inbox::ROOT_CERT_VAR;

/// A pool of connections to `url`, with TLS as its `sslmode` says
/// ([`countersign_inbox::pool_of_url`]).
///
/// # Errors
/// When `url` is not a PostgreSQL URL, or the root certificate file cannot be read.
pub fn pool(url: &str) -> Result<deadpool_postgres::Pool, Error> {
    countersign_inbox::pool_of_url(url)
}

/// [`pool`], trusting the certificate authorities of the PEM `extra_roots` besides the
/// system's.
///
/// # Errors
/// When `url` is not a PostgreSQL URL, or `extra_roots` holds no valid certificate.
pub fn pool_trusting(
    url: &str,
    extra_roots: Option<&[u8]>,
) -> Result<deadpool_postgres::Pool, Error> {
    countersign_inbox::pool_of_url_trusting(url, extra_roots)
}

/// A pool whose schema is migrated before the first connection is handed out.
pub struct Database {
    pool: deadpool_postgres::Pool,
    schema: Schema,
    migrated: tokio::sync::OnceCell<()>,
}

impl Database {
    /// The database at `url`, to be brought to `schema` on first use.
    ///
    /// # Errors
    /// When `url` is not a PostgreSQL URL.
    pub fn connect(url: &str, schema: Schema) -> Result<Self, Error> {
        Ok(Self {
            pool: pool(url)?,
            schema,
            migrated: tokio::sync::OnceCell::new(),
        })
    }

    /// The pool, for what shares the database (an inbox): its connections are not migrated
    /// first; call [`Database::client`] once before.
    #[must_use]
    pub fn pool(&self) -> &deadpool_postgres::Pool {
        &self.pool
    }

    /// The schema migrated, at once when it was before (no connection taken): what a handler
    /// running in another connection's transaction calls before it writes.
    ///
    /// # Errors
    /// When the server cannot be reached or a migration fails.
    pub async fn migrated(&self) -> Result<(), Error> {
        if self.migrated.initialized() {
            return Ok(());
        }
        self.client().await.map(drop)
    }

    /// A pooled connection, the schema migrated first.
    ///
    /// # Errors
    /// When the server cannot be reached or a migration fails.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        // Migrated first, on a connection of its own that goes back before this one is taken:
        // requests at a cold start wait for it holding none (holding one each, they would
        // leave it none).
        self.migrated
            .get_or_try_init(|| async {
                let mut client = self.pool.get().await?;
                let db = client.transaction().await?;
                // Instances that start together migrate one after the other.
                db.execute("SELECT pg_advisory_xact_lock(7262070)", &[])
                    .await?;
                let table = self.schema.table;
                db.batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY)"
                ))
                .await?;
                let ran = format!("SELECT 1 FROM {table} WHERE version = $1");
                let mark = format!("INSERT INTO {table} (version) VALUES ($1)");
                for (version, sql) in self.schema.migrations {
                    if db.query_opt(&ran, &[version]).await?.is_none() {
                        db.batch_execute(sql).await?;
                        db.execute(&mark, &[version]).await?;
                    }
                }
                db.commit().await?;
                Ok::<_, Error>(())
            })
            .await?;
        Ok(self.pool.get().await?)
    }
}

/// `operation`, failed after [`OPERATION_TIMEOUT`].
///
/// # Errors
/// The operation's error, or a timeout.
pub async fn bounded<T>(operation: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::time::timeout(OPERATION_TIMEOUT, operation)
        .await
        .map_err(|_| Error::from("the database did not answer in time"))?
}
