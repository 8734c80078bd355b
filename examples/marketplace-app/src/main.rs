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
//! - `GET /healthz`; `GET /metrics` (Prometheus text: what the countersign layers count).
//!
//! Configuration is by environment variable; see this example's `README.md`. Without a Contentstack key it
//! runs in dev mode: a dev key pair under `DATA_DIR`, and it prints how to try it.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use countersign::contentstack::{
    AppTokenVerifier, BoxKeySource, Event, Module, StackCheck, Tenancy, TenantUnavailable,
    WebhookVerifier, stack_check_fn,
};
use countersign::ip::ForwardedHeader;
use countersign::replay::{BoxReplayStore, DeliveryId, RedisStore, ReplayGuardLayer};
use countersign::session::{AppSession, AppTokenLayer, SessionLayer, SessionToken, Sessions};
use countersign::{
    BasicAuthLayer, ContentstackWebhook, ContentstackWebhookLayer, IpAllowlistLayer, Rejection,
    RequiredHeadersLayer,
};
use serde_json::{Value, json};
use tower::ServiceBuilder;

mod config;
mod store;
mod ui;

use config::Config;
use store::{Change, Delivery, Store};

type AppResult<T> = Result<T, Response>;

/// The database failed or cannot be reached: 503, so that Contentstack retries.
fn internal(error: impl std::fmt::Display) -> Response {
    example_support::storage_unavailable(&error)
}

async fn webhook(
    State(store): State<Store>,
    DeliveryId(id): DeliveryId,
    webhook: ContentstackWebhook,
) -> AppResult<Json<Value>> {
    let (module, event) = (webhook.module(), webhook.event());
    let change = match (&module, &event) {
        (Some(Module::AppInstallation), Some(Event::Install | Event::Upgrade)) => Change::Installed,
        (Some(Module::AppInstallation), Some(Event::Uninstall)) => Change::Uninstalled,
        // Content events, releases, and installation events we do not know: logged.
        _ => Change::Logged,
    };
    let new = store
        .record(Delivery {
            id: id.to_hex(),
            change,
            module: module.map_or_else(|| "unknown".to_owned(), |m| m.to_string()),
            event: event.map_or_else(|| "unknown".to_owned(), |e| e.to_string()),
            api_key: webhook.api_key().unwrap_or("").to_owned(),
            triggered_at: webhook.triggered_at().map(str::to_owned),
            data: webhook.data.clone(),
        })
        .await
        .map_err(internal)?;
    if !new {
        tracing::info!(delivery = %id, "the delivery was recorded before; nothing changed");
    }
    Ok(Json(json!({"status": "accepted"})))
}

/// The origins that may frame the UI pages (`Content-Security-Policy: frame-ancestors`).
#[derive(Clone)]
struct FrameAncestors(Arc<str>);

async fn page(
    Extension(frame_ancestors): Extension<FrameAncestors>,
    Path(location): Path<String>,
    session: AppSession,
    token: SessionToken,
) -> Response {
    match ui::page(&location, &session, &token.token) {
        // Only Contentstack (and, in dev mode, this machine) may frame the page.
        Some(html) => (
            [(
                http::header::CONTENT_SECURITY_POLICY,
                format!("frame-ancestors {}", frame_ancestors.0),
            )],
            Html(html),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such UI location").into_response(),
    }
}

fn stack_of(session: &AppSession) -> Result<String, Rejection> {
    session.stack_api_key().map(str::to_owned).ok_or_else(|| {
        Rejection::new(
            StatusCode::FORBIDDEN,
            "stack_required",
            "Stack app only",
            "this session has no stack",
        )
    })
}

async fn get_settings(State(store): State<Store>, session: AppSession) -> AppResult<Json<Value>> {
    let settings = store
        .settings(session.tenant_key().to_string())
        .await
        .map_err(internal)?;
    let installation = match session.stack_api_key() {
        Some(stack) => store
            .installation(stack.to_owned())
            .await
            .map_err(internal)?,
        None => None,
    };
    Ok(Json(json!({
        "settings": settings,
        "organization_uid": session.organization_uid(),
        "stack_api_key": session.stack_api_key(),
        "installation": installation,
    })))
}

async fn put_settings(
    State(store): State<Store>,
    session: AppSession,
    Json(settings): Json<Value>,
) -> AppResult<Json<Value>> {
    if !settings.is_object() {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"status": "settings must be a JSON object"})),
        )
            .into_response());
    }
    store
        .save_settings(session.tenant_key().to_string(), settings.clone())
        .await
        .map_err(internal)?;
    Ok(Json(json!({ "settings": settings })))
}

/// A page of `/api/events`: `?limit=` (1 to 500, default 50) events before the event id
/// `?before=` (default: the newest).
#[derive(serde::Deserialize)]
struct Page {
    before: Option<i64>,
    limit: Option<u32>,
}

/// The session's stack's events, newest first, a page at a time: `next_before` is the
/// `before` of the next page (`null` on the last).
async fn events(
    State(store): State<Store>,
    session: AppSession,
    page: Result<Query<Page>, QueryRejection>,
) -> AppResult<Json<Value>> {
    let stack = stack_of(&session).map_err(IntoResponse::into_response)?;
    let Ok(Query(Page { before, limit })) = page else {
        return Err(example_support::invalid_page("before"));
    };
    let Some(limit) = example_support::page_limit(limit) else {
        return Err(example_support::invalid_page("before"));
    };
    let events = store.events(stack, before, limit).await.map_err(internal)?;
    let next_before = example_support::next_cursor(&events, limit, "id");
    Ok(Json(
        json!({ "events": events, "next_before": next_before }),
    ))
}

/// This app's stacks: those with a recorded installation that is not uninstalled.
fn installed_stacks(store: Store) -> impl StackCheck {
    stack_check_fn(move |api_key: &str| {
        let (store, api_key) = (store.clone(), api_key.to_owned());
        async move {
            store.is_installed(api_key).await.map_err(|error| {
                tracing::error!(%error, "cannot read the installation records");
                TenantUnavailable::new("the installation records cannot be read")
            })
        }
    })
}

fn webhook_route(
    config: &Config,
    keys: BoxKeySource,
    replay: BoxReplayStore,
    store: Store,
) -> Router {
    match &config.app_uid {
        // Installation events of this app only; every other delivery from an installed stack.
        Some(app_uid) => {
            let tenancy = Tenancy::new()
                .with_app_uid(app_uid)
                .with_stacks(installed_stacks(store.clone()));
            webhook_route_for(config, keys, tenancy, replay, store)
        }
        None => webhook_route_for(config, keys, Tenancy::new(), replay, store),
    }
}

fn webhook_route_for<S: StackCheck>(
    config: &Config,
    keys: BoxKeySource,
    tenancy: Tenancy<S>,
    replay: BoxReplayStore,
    store: Store,
) -> Router {
    let mut verifier = WebhookVerifier::new().with_tolerance(config.tolerance);
    for (stack, secret) in &config.hmac_secrets {
        verifier = match stack {
            Some(stack) => verifier.with_stack_hmac_secret(stack, secret.clone()),
            None => {
                tracing::warn!(
                    "an HMAC secret in CONTENTSTACK_HMAC_SECRETS is bound to no stack: whoever holds it signs for any stack; write API_KEY=secret"
                );
                verifier.with_hmac_secret(secret.clone())
            }
        };
    }
    let mut verification = ContentstackWebhookLayer::new(verifier, keys).with_tenancy(tenancy);
    if let Some(limit) = config.body_limit {
        verification = verification.with_body_limit(limit);
    }
    let ip_allowlist = config.allowed_ips.as_ref().map(|allowed| {
        let layer = IpAllowlistLayer::new(allowed.clone());
        match &config.trusted_proxies {
            Some(proxies) => {
                layer.with_trusted_proxies(proxies.clone(), ForwardedHeader::XForwardedFor)
            }
            None => layer,
        }
    });
    // In this order: the address, Basic auth, the custom headers, the body, signature and
    // tenant, replay protection.
    let layers = ServiceBuilder::new()
        .option_layer(ip_allowlist)
        .option_layer(config.basic_auth.clone().map(BasicAuthLayer::new))
        .option_layer(
            config
                .required_headers
                .clone()
                .map(RequiredHeadersLayer::new),
        )
        .layer(verification)
        .layer(ReplayGuardLayer::new(replay));
    Router::new()
        .route("/webhooks/contentstack", post(webhook).layer(layers))
        .with_state(store)
}

/// The UI and API routes. `spent` is where app-tokens are spent: each opens one session.
fn app(
    config: &Config,
    keys: BoxKeySource,
    webhooks: Router,
    store: Store,
    spent: BoxReplayStore,
) -> Router {
    let mut sessions = Sessions::new([config.session_key.clone()]);
    let mut verifier = AppTokenVerifier::new();
    if let Some(app_uid) = &config.app_uid {
        sessions = sessions.with_app_uid(app_uid);
        verifier = verifier.with_app_uid(app_uid);
    }
    let ui = AppTokenLayer::new(verifier, keys, sessions.clone()).with_single_use(spent);
    let api = Router::new()
        .route("/api/settings", get(get_settings).put(put_settings))
        .route("/api/events", get(events))
        .route_layer(SessionLayer::new(sessions));
    Router::new()
        .route("/ui/{location}", get(page).layer(ui))
        .layer(Extension(FrameAncestors(
            config.frame_ancestors.as_str().into(),
        )))
        .merge(api)
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(store)
        .merge(webhooks)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Config::from_env()?;
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
    // Deliveries and spent app-tokens in stores of their own, so that webhooks never crowd
    // the tokens out: one Redis for a fleet, or memory.
    let replay_store = || -> Result<BoxReplayStore, Box<dyn std::error::Error>> {
        Ok(match &config.redis_url {
            Some(url) => BoxReplayStore::new(RedisStore::new(url)?),
            None => BoxReplayStore::new(example_support::replay_memory(
                config.replay_capacity.clone(),
            )?),
        })
    };
    let webhooks = webhook_route(&config, keys.clone(), replay_store()?, store.clone());
    let router = app(&config, keys, webhooks, store, replay_store()?);

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
    countersign::metrics::describe();
    let router = example_support::harden(router, sensitive);
    example_support::serve(
        listener,
        router,
        example_support::MAX_CONNECTIONS,
        example_support::MAX_CONNECTIONS_PER_PEER,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
