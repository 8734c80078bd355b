//! One instance of a webhook receiver fleet, for the fault tests: Contentstack verification, a
//! replay guard on a shared Redis, and a handler that records what it does in a file.
//!
//! Environment: `LISTEN_ADDR`, `REDIS_URL`, `PUBLIC_KEY` (a PEM file), `RECORD_FILE` (lines
//! `start <delivery id> <pid>` and `done <delivery id> <pid>` are appended), `HANDLER_DELAY_MS`
//! (how long the handler works; `data.delay_ms` of the delivery overrides it) and `LEASE_MS`
//! (the replay guard's lease).
//!
//! The tests start it as a process and kill it with SIGKILL mid-handler.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use countersign::contentstack::{StaticKeys, WebhookVerifier};
use countersign::replay::{DeliveryId, RedisStore, ReplayGuardLayer};
use countersign::{ContentstackWebhook, ContentstackWebhookLayer};
use tower::ServiceBuilder;

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is required"))
}

fn millis(name: &str, default: u64) -> Result<Duration, String> {
    std::env::var(name)
        .ok()
        .map_or(Ok(default), |v| {
            v.parse().map_err(|_| format!("{name} is not a number"))
        })
        .map(Duration::from_millis)
}

fn record(path: &PathBuf, what: &str, id: &DeliveryId) {
    // One write per line with O_APPEND: lines of several processes never interleave.
    let line = format!("{what} {id} {}\n", std::process::id());
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = written {
        eprintln!("fleet-node: cannot record to {}: {error}", path.display());
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = var("LISTEN_ADDR")?.parse()?;
    let keys = StaticKeys::from_file(var("PUBLIC_KEY")?)?;
    let store = RedisStore::new(&var("REDIS_URL")?)?;
    let records = PathBuf::from(var("RECORD_FILE")?);
    let delay = millis("HANDLER_DELAY_MS", 0)?;
    let lease = millis(
        "LEASE_MS",
        countersign::replay::DEFAULT_LEASE.as_millis() as u64,
    )?;

    let handler = post(move |id: DeliveryId, webhook: ContentstackWebhook| {
        let records = records.clone();
        async move {
            record(&records, "start", &id);
            let delay = webhook
                .data
                .get("delay_ms")
                .and_then(serde_json::Value::as_u64)
                .map_or(delay, Duration::from_millis);
            tokio::time::sleep(delay).await;
            record(&records, "done", &id);
            "handled"
        }
    });
    let layers = ServiceBuilder::new()
        .layer(ContentstackWebhookLayer::new(WebhookVerifier::new(), keys))
        .layer(ReplayGuardLayer::new(store).with_lease(lease));
    let app = Router::new().route("/hook", handler.layer(layers));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
