//! A Contentful app backend built with countersign.
//!
//! - `POST /contentful/webhooks` and `POST /contentful/app-events`: verified and
//!   replay-protected, recorded once per delivery (in memory, or in PostgreSQL with
//!   `DATABASE_URL`); answer 200 `{"status":"accepted"}`, 503 while the database is unreachable
//!   (so that Contentful retries).
//! - `POST /contentful/actions/{name}`: frontend-signed requests (a user's, through the app
//!   frontend), which must carry a signed user id; answer the verified context. App action
//!   calls that Contentful makes without a user are app events here.
//! - `GET /api/deliveries[?after=&limit=]`: frontend-signed, with a signed user, space and
//!   environment: what that space environment received, oldest first, a page at a time.
//! - `GET /healthz`; `GET /metrics` (Prometheus text: what the countersign layers count).
//!
//! The webhook and app event routes take app events and webhooks only: a request a user had
//! signed through the app frontend is refused there (403 `request_kind_not_allowed`), and the
//! actions route takes nothing else.
//!
//! Configuration: `LISTEN_ADDR` (default `127.0.0.1:3001`), `CONTENTFUL_SIGNING_SECRETS` (the
//! app's signing secrets, comma-separated; dev mode generates one under `DATA_DIR`),
//! `CONTENTFUL_WEBHOOK_SECRETS` (spaces' webhook signing secrets, comma-separated
//! `SPACE_ID=secret` pairs: each verifies only webhooks of its space), `CONTENTFUL_TTL_SECS`
//! (default 30), `CONTENTFUL_PATH_PREFIX`, `REDIS_URL`, `REPLAY_STORE_CAPACITY` (entries of the
//! in-memory replay store without Redis; default 64 MiB's worth), `DATABASE_URL`, `DATA_DIR`
//! (default `./data`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use countersign::contentful::{DEFAULT_TTL, RequestVerifier, SigningSecret};
use countersign::replay::{BoxReplayStore, RedisStore};

mod records;
mod routes;

use records::Records;
use routes::routes;

type Error = Box<dyn std::error::Error>;

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The dev secret under `data_dir`, made on the first start.
fn dev_secret(data_dir: &Path) -> Result<SigningSecret, Error> {
    let text = example_support::kept_secret(&data_dir.join("contentful-secret"), || {
        SigningSecret::generate()
            .map(|secret| secret.expose().to_owned())
            .map_err(|e| e.to_string())
    })?;
    Ok(SigningSecret::new(text)?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let listen: SocketAddr = var("LISTEN_ADDR")
        .unwrap_or_else(|| "127.0.0.1:3001".into())
        .parse()?;
    let data_dir = PathBuf::from(var("DATA_DIR").unwrap_or_else(|| "./data".into()));
    example_support::private_dir(&data_dir)?;

    let (secrets, dev) = match var("CONTENTFUL_SIGNING_SECRETS") {
        Some(list) => (
            list.split(',')
                .map(|s| SigningSecret::new(s.trim()))
                .collect::<Result<Vec<_>, _>>()?,
            false,
        ),
        None => (vec![dev_secret(&data_dir)?], true),
    };
    let ttl = var("CONTENTFUL_TTL_SECS")
        .map(|v| v.parse().map(Duration::from_secs))
        .transpose()?
        .unwrap_or(DEFAULT_TTL);
    let mut verifier = RequestVerifier::with_secrets(secrets.clone())?.with_ttl(ttl);
    for (space, secret) in example_support::tenant_secrets(var("CONTENTFUL_WEBHOOK_SECRETS"))? {
        let Some(space) = space else {
            return Err("CONTENTFUL_WEBHOOK_SECRETS: each entry is SPACE_ID=secret".into());
        };
        verifier = verifier.with_space_webhook_secret(space, SigningSecret::new(secret)?);
    }
    if let Some(prefix) = var("CONTENTFUL_PATH_PREFIX") {
        verifier = verifier.with_path_prefix(&prefix)?;
    }
    let records = match var("DATABASE_URL") {
        Some(url) => Records::postgres(&url).map_err(|e| format!("DATABASE_URL: {e}"))?,
        None => Records::memory(),
    };
    let replay = match var("REDIS_URL") {
        Some(url) => BoxReplayStore::new(RedisStore::new(&url)?),
        None => BoxReplayStore::new(example_support::replay_memory(var(
            "REPLAY_STORE_CAPACITY",
        ))?),
    };
    // Webhooks and app events are answered once committed to the durable inbox, and recorded
    // from there by its workers.
    let inbox = records
        .inbox(&data_dir)
        .map_err(|e| format!("the inbox: {e}"))?;
    let workers = records.work(&inbox);
    let router = routes(verifier, replay, records, inbox);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    if dev {
        println!(
            "dev mode: requests are verified with the secret in {}\n\nSend a signed webhook:\n  \
             countersign send contentful http://{address}/contentful/webhooks --secret \"$(cat {})\" \
             --topic ContentManagement.Entry.publish --space-id dev-space --body '{{\"sys\":{{\"id\":\"e1\"}}}}'\n",
            data_dir.join("contentful-secret").display(),
            data_dir.join("contentful-secret").display(),
        );
    }
    println!("listening on http://{address}");
    let sensitive = countersign::SENSITIVE_HEADERS
        .iter()
        .map(|name| axum::http::HeaderName::from_static(name));
    let router = router.merge(example_support::metrics_router());
    countersign::metrics::describe();
    countersign_inbox::metrics::describe();
    let router = example_support::harden(router, sensitive);
    example_support::serve(
        listener,
        router,
        example_support::MAX_CONNECTIONS,
        example_support::MAX_CONNECTIONS_PER_PEER,
    )
    .await?;
    // The server stopped: the deliveries being recorded finish, the others wait in the inbox.
    workers.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

#[cfg(test)]
mod tests;
