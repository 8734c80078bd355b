//! A Contentful app backend built with countersign.
//!
//! - `POST /contentful/webhooks` and `POST /contentful/app-events`: verified and
//!   replay-protected; answer 200 `{"status":"accepted"}`.
//! - `POST /contentful/actions/{name}`: frontend-signed requests, which must carry a signed
//!   user id; answer the verified context.
//! - `GET /healthz`; `GET /metrics` (Prometheus text: what the countersign layers count).
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
    let router = router.merge(example_support::metrics_router());
    countersign::metrics::describe();
    let router = example_support::harden(router, sensitive);
    example_support::serve(listener, router, example_support::MAX_CONNECTIONS).await?;
    Ok(())
}

/// The app's own tests: the test kit's signed requests through the app's router.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use countersign::testing::TestKit;
    use tower::ServiceExt as _;

    use super::*;

    async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn webhooks_and_app_events_are_handled_by_topic_once() {
        let kit = TestKit::new();
        let router = routes(kit.contentful_verifier(), MemoryStore::new(1_000));
        for (topic, handling) in [
            ("ContentManagement.Entry.publish", "content_changed"),
            ("ContentManagement.Asset.unpublish", "content_changed"),
            ("ContentManagement.Entry.delete", "content_deleted"),
            ("ContentManagement.AppInstallation.delete", "uninstalled"),
            (
                "ContentManagement.AppInstallation.update",
                "installation_changed",
            ),
            ("ContentManagement.Task.create", "ignored"),
            ("ContentManagement.Hologram.levitate", "ignored"),
        ] {
            let (status, body) = send(
                &router,
                kit.contentful_webhook("/contentful/webhooks", topic, "{}"),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{topic}: {body}");
            assert_eq!(
                body,
                json!({"status": "accepted", "topic": topic, "handling": handling})
            );
        }
        let event = || {
            kit.contentful_app_event(
                "/contentful/app-events",
                "ContentManagement.Entry.save",
                "{}",
                "event-1",
            )
        };
        assert_eq!(send(&router, event()).await.1["status"], "accepted");
        assert_eq!(send(&router, event()).await.1["status"], "duplicate");
    }

    #[tokio::test]
    async fn actions_need_a_signed_user() {
        let kit = TestKit::new();
        let router = routes(kit.contentful_verifier(), MemoryStore::new(1_000));
        let (status, body) = send(
            &router,
            kit.contentful_action("/contentful/actions/sync", "user-1", "{}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["user_id"], "user-1");
        assert_eq!(body["action"], "sync");
        // A signed request without a user (a webhook's signature) is not an action.
        let (status, body) = send(
            &router,
            kit.contentful_webhook(
                "/contentful/actions/sync",
                "ContentManagement.Entry.save",
                "{}",
            ),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("user_id_missing"))
        );
        let forged = TestKit::new().with_contentful_secret(SigningSecret::generate().unwrap());
        let (status, _) = send(
            &router,
            forged.contentful_action("/contentful/actions/sync", "user-1", "{}"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}
