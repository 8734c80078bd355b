//! A pool of connections to a PostgreSQL URL, with TLS as its `sslmode` says (feature
//! `postgres-url`): what the `countersign` CLI and the examples open an inbox with.

use super::OPERATION_TIMEOUT;
use crate::delivery::BoxError;

/// Where [`pool_of_url`] takes a PEM file of certificate authorities to trust besides the
/// system's, as libpq does: a private PostgreSQL's own CA.
pub const ROOT_CERT_VAR: &str = "PGSSLROOTCERT";

/// A pool of connections to `url` (`postgres://user:password@host:port/database`), with TLS as
/// its `sslmode` says: `require` (TLS or no connection), `prefer` (TLS when the server offers
/// it) or `disable`; without `sslmode`, no TLS. TLS is rustls, and the server's certificate is
/// always checked, against the system's roots and the PEM file named by [`ROOT_CERT_VAR`] (so
/// `require` means what libpq's `verify-full` means, and `prefer` fails on a certificate it
/// cannot check rather than going on in the clear). Nothing is sent yet. A pooled connection
/// is checked before it is handed out: after a server restart the dead ones are dropped.
///
/// # Errors
/// When `url` is not a PostgreSQL URL, or the root certificate file cannot be read.
pub fn pool_of_url(url: &str) -> Result<deadpool_postgres::Pool, BoxError> {
    let roots = match std::env::var_os(ROOT_CERT_VAR) {
        Some(path) => Some(
            std::fs::read(&path)
                .map_err(|e| format!("{ROOT_CERT_VAR} ({}): {e}", path.to_string_lossy()))?,
        ),
        None => None,
    };
    pool_of_url_trusting(url, roots.as_deref())
}

/// [`pool_of_url`], trusting the certificate authorities of the PEM `extra_roots` besides the
/// system's.
///
/// # Errors
/// When `url` is not a PostgreSQL URL, or `extra_roots` holds no valid certificate.
pub fn pool_of_url_trusting(
    url: &str,
    extra_roots: Option<&[u8]>,
) -> Result<deadpool_postgres::Pool, BoxError> {
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
fn tls(extra_roots: Option<&[u8]>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, BoxError> {
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
