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

/// Where [`pool`] takes a PEM file of certificate authorities to trust besides the system's,
/// as libpq does: a private PostgreSQL's own CA.
pub const ROOT_CERT_VAR: &str = "PGSSLROOTCERT";

/// A pool of connections to `url` (`postgres://user:password@host:port/database`), with TLS as
/// its `sslmode` says: `require` (TLS or no connection), `prefer` (TLS when the server offers
/// it) or `disable`; without `sslmode`, no TLS, as before TLS was supported. TLS is rustls,
/// and the server's certificate is always checked, against the system's roots and the PEM
/// file named by [`ROOT_CERT_VAR`] (so `require` means what libpq's `verify-full` means, and
/// `prefer` fails on a certificate it cannot check rather than going on in the clear).
/// Nothing is sent yet, so an app starts (and answers 503) while the server is down. A pooled
/// connection is checked before it is handed out: after a server restart the dead ones are
/// dropped.
///
/// # Errors
/// When `url` is not a PostgreSQL URL, or the root certificate file cannot be read.
pub fn pool(url: &str) -> Result<deadpool_postgres::Pool, Error> {
    let roots = match std::env::var_os(ROOT_CERT_VAR) {
        Some(path) => Some(
            std::fs::read(&path)
                .map_err(|e| format!("{ROOT_CERT_VAR} ({}): {e}", path.to_string_lossy()))?,
        ),
        None => None,
    };
    pool_trusting(url, roots.as_deref())
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
    let mut config: tokio_postgres::Config = url.parse()?;
    if !url.contains("sslmode") {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    }
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tls(extra_roots)?,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Verified,
        },
    );
    Ok(deadpool_postgres::Pool::builder(manager)
        .max_size(16)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(OPERATION_TIMEOUT))
        .create_timeout(Some(OPERATION_TIMEOUT))
        .recycle_timeout(Some(OPERATION_TIMEOUT))
        .build()?)
}

/// The rustls connector: the system's roots and `extra_roots` (PEM).
fn tls(extra_roots: Option<&[u8]>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    // A system root that does not parse is skipped, as every TLS client does.
    let (_, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(pem) = extra_roots {
        let certificates = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?;
        if certificates.is_empty() {
            return Err(format!("{ROOT_CERT_VAR} holds no PEM certificate").into());
        }
        for certificate in certificates {
            roots.add(certificate)?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
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
