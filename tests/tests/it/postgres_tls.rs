//! The examples' PostgreSQL pool honours `sslmode`, with rustls: a real cluster with TLS on, a
//! certificate from a local CA, and one with TLS off.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use countersign_tests::{LocalCa, Postgres};
use example_support::postgres::pool_trusting;

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
    let LocalCa {
        ca,
        certificate,
        key,
    } = LocalCa::new();
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
        connect(&format!("{url}?sslmode=prefer"), Some(&ca)).await,
        Ok(true),
        "prefer takes TLS when offered"
    );
    assert_eq!(
        connect(&url, None).await,
        Ok(false),
        "no sslmode: no TLS, as before"
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
    assert_eq!(
        connect(&format!("{url}?sslmode=prefer"), None).await,
        Ok(false),
        "prefer goes without TLS where none is offered"
    );
}
