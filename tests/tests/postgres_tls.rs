//! The examples' PostgreSQL pool honours `sslmode`, with rustls: a real cluster with TLS on, a
//! certificate from a local CA, and one with TLS off.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use countersign_tests::Postgres;
use example_support::postgres::pool_trusting;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

/// A CA's PEM, and a certificate for 127.0.0.1 it signed with its key.
fn local_ca() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// Whether a connection of a pool on `url` (trusting `ca`) is up, and over TLS.
async fn connect(url: &str, ca: Option<&str>) -> Result<bool, String> {
    let pool = pool_trusting(url, ca.map(str::as_bytes)).map_err(|e| e.to_string())?;
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get::<_, bool>(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_honours_sslmode_and_checks_the_servers_certificate() {
    let (ca, certificate, key) = local_ca();
    let with_tls =
        tokio::task::spawn_blocking(move || Postgres::start_with_tls(&certificate, &key))
            .await
            .unwrap();
    let url = with_tls.url();
    assert_eq!(
        connect(&format!("{url}?sslmode=require"), Some(&ca)).await,
        Ok(true),
        "require, trusting the CA: TLS"
    );
    assert_eq!(
        connect(&url, Some(&ca)).await,
        Ok(true),
        "prefer (the default) takes TLS when offered"
    );
    assert_eq!(
        connect(&format!("{url}?sslmode=disable"), Some(&ca)).await,
        Ok(false),
        "disable: no TLS"
    );
    assert!(
        connect(&format!("{url}?sslmode=require"), None)
            .await
            .is_err(),
        "a certificate no trusted CA signed is refused"
    );

    let without_tls = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let url = without_tls.url();
    assert!(
        connect(&format!("{url}?sslmode=require"), Some(&ca))
            .await
            .is_err(),
        "require: no connection without TLS"
    );
    assert_eq!(connect(&url, None).await, Ok(false), "prefer falls back");
}
