//! A Contentful app backend built with countersign.
//!
//! - `POST /contentful/webhooks` and `POST /contentful/app-events`: verified and
//!   replay-protected; answer 200 `{"status":"accepted"}`.
//! - `POST /contentful/actions/{name}`: frontend-signed requests, which must carry a signed
//!   user id; answer the verified context.
//! - `GET /healthz`.
//!
//! Configuration: `LISTEN_ADDR` (default `127.0.0.1:3001`), `CONTENTFUL_SIGNING_SECRETS`
//! (comma-separated; dev mode generates one under `DATA_DIR`), `CONTENTFUL_TTL_SECS` (default
//! 30), `CONTENTFUL_PATH_PREFIX`, `REDIS_URL`, `DATA_DIR` (default `./data`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::Path as UrlPath;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use countersign::contentful::{Action, DEFAULT_TTL, Entity, SigningSecret, Topic, Verifier};
use countersign::replay::{MemoryStore, RedisStore, ReplayGuardLayer, ReplayStore};
use countersign::{ContentfulLayer, ContentfulRequest, Rejection};
use serde_json::{Value, json};
use tower::ServiceBuilder;

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

async fn accepted(request: ContentfulRequest) -> Json<Value> {
    let topic = request.topic();
    let handling = handling(topic.as_ref());
    tracing::info!(?topic, space = ?request.space_id(), handling, "accepted a verified Contentful request");
    Json(json!({"status": "accepted", "topic": topic, "handling": handling}))
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

fn routes<St: ReplayStore>(verifier: Verifier, replay: St) -> Router {
    // Verification first, then replay protection (one store for every route): a webhook's
    // retries share its signed idempotency key; a captured action replayed within the TTL has
    // the same signed message, and is acknowledged rather than run again.
    let protected = ServiceBuilder::new()
        .layer(ContentfulLayer::new(verifier))
        .layer(ReplayGuardLayer::new(replay));
    Router::new()
        .route(
            "/contentful/webhooks",
            post(accepted).layer(protected.clone()),
        )
        .route(
            "/contentful/app-events",
            post(accepted).layer(protected.clone()),
        )
        .route("/contentful/actions/{name}", post(action).layer(protected))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
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
    if let Some(prefix) = var("CONTENTFUL_PATH_PREFIX") {
        verifier = verifier.with_path_prefix(&prefix)?;
    }
    let router = match var("REDIS_URL") {
        Some(url) => routes(verifier, RedisStore::new(&url)?),
        None => routes(verifier, MemoryStore::new(100_000)),
    };

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
    let router = example_support::harden(router, sensitive);
    example_support::serve(listener, router, example_support::MAX_CONNECTIONS).await?;
    Ok(())
}
