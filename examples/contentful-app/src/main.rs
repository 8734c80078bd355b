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

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use countersign::contentful::{
    Action, DEFAULT_TTL, Entity, RequestKinds, SigningSecret, Topic, Verifier,
};
use countersign::replay::{BoxReplayStore, DeliveryId, RedisStore, ReplayGuardLayer, ReplayStore};
use countersign::{ContentfulLayer, ContentfulRequest, Rejection};
use serde_json::{Value, json};
use tower::ServiceBuilder;

mod records;

use records::{Received, Records};

type Error = Box<dyn std::error::Error>;

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// What a verified webhook or app event asks of this app, by its signed topic.
fn handling(topic: Option<&Topic>) -> &'static str {
    let Some(topic) = topic else {
        return "untyped";
    };
    match (topic.entity(), topic.action()) {
        (Entity::Entry | Entity::Asset, Action::Publish | Action::Unpublish) => "content_changed",
        (Entity::Entry | Entity::Asset, Action::Delete) => "content_deleted",
        (Entity::AppInstallation, Action::Delete) => "uninstalled",
        (Entity::AppInstallation, _) => "installation_changed",
        // Acknowledge what this app does not handle, so that Contentful does not retry it.
        _ => "ignored",
    }
}

/// A verified webhook or app event: recorded once, then answered with its handling.
async fn accepted(
    State(records): State<Records>,
    DeliveryId(id): DeliveryId,
    request: ContentfulRequest,
) -> Result<Json<Value>, Response> {
    let topic = request.topic();
    let handling = handling(topic.as_ref());
    let received = Received {
        id: id.to_hex(),
        // The tenant: the signed space, or the signed CRN's.
        space_id: request.tenant().unwrap_or("").to_owned(),
        environment_id: request.environment_id().unwrap_or("").to_owned(),
        topic: topic.as_ref().map(ToString::to_string),
        handling,
        body: String::from_utf8_lossy(request.body()).into_owned(),
    };
    let new = records
        .record(received)
        .await
        .map_err(|e| example_support::storage_unavailable(&e))?;
    if !new {
        tracing::info!(delivery = %id, "the delivery was recorded before; nothing changed");
    }
    tracing::info!(?topic, space = ?request.space_id(), handling, "accepted a verified Contentful request");
    Ok(Json(
        json!({"status": "accepted", "topic": topic, "handling": handling}),
    ))
}

/// A page of `/api/deliveries`: `?limit=` (1 to 500, default 50) deliveries after the
/// sequence number `?after=` (default: from the first).
#[derive(serde::Deserialize)]
struct Page {
    after: Option<i64>,
    limit: Option<u32>,
}

/// What the signed space environment received, oldest first; `next_after` is the `after` of
/// the next page (`null` on the last). Frontend-signed: the user, space and environment must be
/// signed.
async fn deliveries(
    State(records): State<Records>,
    request: ContentfulRequest,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Value>, Response> {
    let (Some(_user), Some(space), Some(environment)) = (
        request.user_id(),
        request.space_id(),
        request.environment_id(),
    ) else {
        return Err(Rejection::new(
            StatusCode::UNAUTHORIZED,
            "context_missing",
            "Signed user, space and environment missing",
            "the app frontend signs the user, space and environment of this request",
        )
        .into_response());
    };
    let Ok(Query(Page { after, limit })) = page else {
        return Err(example_support::invalid_page("after"));
    };
    let Some(limit) = example_support::page_limit(limit) else {
        return Err(example_support::invalid_page("after"));
    };
    let deliveries = records
        .list(
            space.to_owned(),
            environment.to_owned(),
            after.unwrap_or(0),
            limit,
        )
        .await
        .map_err(|e| example_support::storage_unavailable(&e))?;
    let next_after = example_support::next_cursor(&deliveries, limit, "seq");
    Ok(Json(
        json!({"deliveries": deliveries, "next_after": next_after}),
    ))
}

async fn action(
    UrlPath(name): UrlPath<String>,
    request: ContentfulRequest,
) -> Result<Json<Value>, Rejection> {
    let user_id = request.user_id().ok_or_else(|| {
        Rejection::new(
            StatusCode::UNAUTHORIZED,
            "user_id_missing",
            "Signed user id missing",
            "frontend-signed requests carry a signed x-contentful-user-id",
        )
    })?;
    let mut context = json!({
        "action": name,
        "space_id": request.space_id(),
        "environment_id": request.environment_id(),
        "user_id": user_id,
    });
    if let Some(app_id) = request.app_id() {
        context["app_id"] = app_id.into();
    }
    Ok(Json(context))
}

fn routes<St: ReplayStore>(verifier: Verifier, replay: St, records: Records) -> Router {
    // Verification first, then replay protection (one store for every route): a webhook's
    // retries share its signed idempotency key; a captured action replayed within the TTL has
    // the same signed message, and is acknowledged rather than run again. Events and webhooks
    // are never a request a user had signed; actions and reads are nothing else. Reading the
    // records changes nothing: verified only.
    let replay = ReplayGuardLayer::new(replay);
    let events = ServiceBuilder::new()
        .layer(ContentfulLayer::new(
            verifier.clone().with_kinds(RequestKinds::EVENTS),
        ))
        .layer(replay.clone());
    let frontend = verifier.with_kinds(RequestKinds::FRONTEND);
    let actions = ServiceBuilder::new()
        .layer(ContentfulLayer::new(frontend.clone()))
        .layer(replay);
    Router::new()
        .route("/contentful/webhooks", post(accepted).layer(events.clone()))
        .route("/contentful/app-events", post(accepted).layer(events))
        .route("/contentful/actions/{name}", post(action).layer(actions))
        .route(
            "/api/deliveries",
            get(deliveries).layer(ContentfulLayer::new(frontend)),
        )
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(records)
}

/// The dev secret under `data_dir`, made on the first start.
fn dev_secret(data_dir: &Path) -> Result<SigningSecret, Error> {
    let path = data_dir.join("contentful-secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(SigningSecret::new(text.trim())?);
    }
    let secret = SigningSecret::generate()?;
    example_support::write_private(&path, secret.expose())?;
    Ok(secret)
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
    let mut verifier = Verifier::with_secrets(secrets.clone())?.with_ttl(ttl);
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
    let router = routes(verifier, replay, records);

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
