//! A Contentstack Marketplace App backend built with countersign.
//!
//! - `POST /webhooks/contentstack`: verified webhooks (signature, freshness, this app and its
//!   stacks, replay, and the optional Basic auth and IP allowlist), recorded durably once per
//!   delivery id, in SQLite or (with `DATABASE_URL`) PostgreSQL; 503 while the database is
//!   unreachable, so that Contentstack retries.
//! - `GET /ui/{location}?app-token=...`: a UI location page; the app-token is verified and
//!   exchanged for the app's own session, which the page sends as a bearer token.
//! - `GET|PUT /api/settings`, `GET /api/events[?before=&limit=]`: the session's installation and
//!   stack only; events newest first, a page at a time, each with its webhook's `data`.
//! - With an OAuth client configured: `GET /oauth/callback?code=..&location=..` (the install
//!   flow's redirect: the installation's app token, kept sealed in the database) and
//!   `GET /api/content-types` (the session's stack's content types, from Contentstack's API as
//!   the app); an uninstall event forgets the installation's tokens.
//! - `GET /healthz`; `GET /metrics` (Prometheus text: what the countersign layers count).
//!
//! Configuration is by environment variable; see this example's `README.md`. Without a Contentstack key it
//! runs in dev mode: a dev key pair under `DATA_DIR`, and it prints how to try it.

use axum::response::Response;
use countersign::contentstack::BoxKeySource;
use countersign::replay::{BoxReplayStore, RedisStore};

mod api;
mod config;
mod deliveries;
mod oauth;
mod reconcile;
mod store;
mod ui;
mod webhooks;

use config::Config;
use store::Store;

type AppResult<T> = Result<T, Response>;

/// The database failed or cannot be reached: 503, so that Contentstack retries.
fn internal(error: impl std::fmt::Display) -> Response {
    example_support::storage_unavailable(&error)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut config = Config::from_env()?;
    if config.app_uid.is_none() {
        tracing::warn!(
            "CONTENTSTACK_APP_UID is not set: app-tokens of any app and webhooks of any stack are accepted"
        );
    }
    let store = match &config.database_url {
        Some(url) => {
            let store = Store::connect(url).map_err(|e| format!("DATABASE_URL: {e}"))?;
            if let Err(error) = store.migrate().await {
                // Not fatal: requests answer 503 until the database is reachable.
                tracing::warn!(%error, "the database is not reachable yet");
            }
            store
        }
        None => Store::open(&config.data_dir).map_err(|e| e.to_string())?,
    };
    let keys = match &config.keys {
        config::KeySource::Static(keys) => BoxKeySource::new(keys.clone()),
        config::KeySource::WellKnown(keys) => {
            if let Err(error) = keys.prefetch().await {
                // Not fatal: webhooks answer 503 (Contentstack retries) until the key arrives.
                tracing::warn!(%error, "the Contentstack key is not available yet");
            }
            BoxKeySource::new(keys.clone())
        }
    };
    // Spent app-tokens: one Redis for a fleet, or memory. (Deliveries are remembered by the
    // inbox.)
    let replay_store = || -> Result<BoxReplayStore, Box<dyn std::error::Error>> {
        Ok(match &config.redis_url {
            Some(url) => BoxReplayStore::new(RedisStore::new(url)?),
            None => BoxReplayStore::new(example_support::replay_memory(
                config.replay_capacity.clone(),
            )?),
        })
    };
    // The webhooks' inbox, in the app's database; with a fleet's PostgreSQL, each instance
    // also spools under its own DATA_DIR while the database is down.
    let deliveries = store
        .inbox(&config.data_dir)
        .map_err(|e| format!("the inbox: {e}"))?;
    // A reconciliation looks back as far as the inbox remembers handled deliveries.
    let deliveries = match &config.reconcile {
        Some(reconcile) => deliveries.with_retry_horizon(
            reconcile
                .window
                .max(countersign_inbox::DEFAULT_RETRY_HORIZON),
        ),
        None => deliveries,
    };
    let workers = deliveries::work(&deliveries, &store);
    let webhooks = webhooks::route(&config, keys.clone(), store.clone(), deliveries.clone());
    let as_the_app = oauth::AsTheApp::new(
        config.oauth.as_ref(),
        &store,
        config.trusted_proxies.clone(),
    )?;
    let scheduled = config.reconcile.take().map(|reconcile| {
        (
            reconcile,
            store.clone(),
            deliveries.clone(),
            as_the_app.clone(),
        )
    });
    let router = api::router(
        &config,
        keys,
        webhooks,
        store,
        replay_store()?,
        as_the_app,
        deliveries,
    );

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    tracing::info!("marketplace-app listening on http://{address}");
    if let Some(instructions) = config.dev_instructions() {
        println!("{instructions}");
    }
    println!("listening on http://{address}");
    // Credentials, signatures, sessions and the custom webhook headers: redacted in traces.
    let sensitive = countersign::SENSITIVE_HEADERS
        .iter()
        .map(|name| http::HeaderName::from_static(name))
        .chain(
            config
                .required_headers
                .iter()
                .flat_map(|r| r.names().cloned()),
        );
    let router = router.merge(example_support::metrics_router());
    // After the metrics recorder is installed: a run at startup is counted too.
    if let Some((reconcile, store, deliveries, as_the_app)) = scheduled {
        reconcile::start(
            reconcile,
            config.app_uid.clone(),
            store,
            deliveries,
            as_the_app,
        );
    }
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
    // The server stopped: the deliveries being handled finish, the others wait in the inbox.
    workers.shutdown(std::time::Duration::from_secs(10)).await;
    Ok(())
}

#[cfg(test)]
mod tests;
