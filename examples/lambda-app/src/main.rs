//! Contentful app events and Contentstack webhooks as one AWS Lambda function: each request
//! verified before any handler runs, on the target its sender signed (whatever the trigger:
//! REST API, HTTP API, Function URL or load balancer), then committed once to a durable inbox
//! and answered at once.
//!
//! - `POST /contentful/events`: Contentful app events, app actions and webhooks.
//! - `POST /webhooks/contentstack`: Contentstack webhooks (HMAC, and RSA with a public key).
//!
//! Both answer 200 `{"status":"accepted"}` (`duplicate` for one the inbox has), or
//! `application/problem+json` with a reason of countersign's catalogue. The routes are
//! relative to `LAMBDA_PATH_PREFIX`, the stage or base path the sender's URL has.
//!
//! Configuration (environment):
//! - `CONTENTFUL_SIGNING_SECRETS`: the app's signing secrets and a webhook's, comma-separated;
//! - `CONTENTSTACK_HMAC_SECRETS`: `API_KEY=secret` pairs, comma-separated: each verifies only
//!   its stack's deliveries;
//! - `CONTENTSTACK_PUBLIC_KEY`: a PEM file, for RSA-signed deliveries;
//! - `DATABASE_URL`: the inbox, `postgres://...` (or `sqlite:PATH`, which a function refuses
//!   unless `LAMBDA_ALLOW_SQLITE=1`: its `/tmp` is this instance's alone, and goes with it).
//!   Without it, deliveries are verified and answered, not kept;
//! - `LAMBDA_PATH_PREFIX`: `/prod` for a REST API's `execute-api` URL or an HTTP API's named
//!   stage, `/api` for a custom domain's base path mapping;
//! - `LAMBDA_APP_ROLE`: `http` (the default), or `worker`: the same binary as a second
//!   function, run on a schedule, that hands the inbox's deliveries to [`handle`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use countersign::contentful::{RequestKinds, RequestVerifier, SigningSecret};
use countersign::contentstack::{HmacSecret, KeySource, StaticKeys, WebhookVerifier};
use countersign::lambda::{LambdaTarget, LambdaTargetLayer};
use countersign::{ContentfulRequestLayer, ContentstackWebhookLayer};
use countersign_inbox::{BoxError, Inbox, InboxDelivery, PostgresInbox, SqliteInbox};
use example_support::inbox::AnyInbox;
use lambda_http::lambda_runtime::{self, LambdaEvent};
use serde_json::{Value, json};
use tower_layer::Layer as _;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long before its invocation's deadline a worker stops taking deliveries.
const WORKER_MARGIN: Duration = Duration::from_secs(10);

/// How many deliveries a worker handles at once.
const WORKERS: usize = 4;

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // CloudWatch stamps each line: no time and no colours of ours.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .without_time()
        .with_ansi(false)
        .init();
    let inbox = inbox()?;
    match var("LAMBDA_APP_ROLE").as_deref().unwrap_or("http") {
        "http" => lambda_http::run(function(inbox)?).await,
        "worker" => {
            let inbox = inbox.ok_or("the worker needs DATABASE_URL, the inbox it drains")?;
            let worker = lambda_runtime::service_fn(move |event: LambdaEvent<Value>| {
                drain(inbox.clone(), event.context.deadline())
            });
            lambda_runtime::run(worker).await
        }
        other => Err(format!("LAMBDA_APP_ROLE: `{other}` is neither http nor worker").into()),
    }
}

/// The inbox `DATABASE_URL` names, if any.
fn inbox() -> Result<Option<AnyInbox>, Error> {
    let Some(url) = var("DATABASE_URL") else {
        return Ok(None);
    };
    if let Some(path) = url.strip_prefix("sqlite:") {
        if var("AWS_LAMBDA_FUNCTION_NAME").is_some()
            && var("LAMBDA_ALLOW_SQLITE").as_deref() != Some("1")
        {
            return Err(
                "DATABASE_URL: SQLite in a Lambda function lives in this instance's /tmp, \
                        which every instance has its own of and which goes with it: use PostgreSQL \
                        (or set LAMBDA_ALLOW_SQLITE=1 to keep it anyway)"
                    .into(),
            );
        }
        return Ok(Some(AnyInbox::Sqlite(Inbox::new(SqliteInbox::open(path)?))));
    }
    let pool = countersign_inbox::pool_of_url(&url).map_err(|e| format!("DATABASE_URL: {e}"))?;
    // A function instance serves one request at a time: one connection, kept between
    // invocations, and checked before it is used again (a frozen instance's may be gone).
    pool.resize(1);
    // No spool: a function's disk goes with its instance. While the database is down, a
    // delivery is answered 503 and its provider sends it again.
    Ok(Some(AnyInbox::Postgres(Inbox::new(PostgresInbox::new(
        pool,
    )))))
}

/// The function: every configured route behind the layers that verify it, routed on the
/// target its sender signed.
fn function(inbox: Option<AnyInbox>) -> Result<LambdaTarget<Router>, Error> {
    let prefix = var("LAMBDA_PATH_PREFIX");
    let accept = post(move |request: Request| accept(inbox.clone(), request));
    let mut router = Router::new();
    if let Some(secrets) = var("CONTENTFUL_SIGNING_SECRETS") {
        let secrets = secrets
            .split(',')
            .map(|secret| SigningSecret::new(secret.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut verifier = RequestVerifier::with_secrets(secrets)?.with_kinds(RequestKinds::EVENTS);
        if let Some(prefix) = &prefix {
            verifier = verifier.with_path_prefix(prefix)?;
        }
        let layer = ContentfulRequestLayer::new(verifier);
        router = router.route("/contentful/events", accept.clone().layer(layer));
    }
    let hmac_secrets = example_support::tenant_secrets(var("CONTENTSTACK_HMAC_SECRETS"))
        .map_err(|e| format!("CONTENTSTACK_HMAC_SECRETS: {e}"))?;
    let public_key = var("CONTENTSTACK_PUBLIC_KEY");
    if !hmac_secrets.is_empty() || public_key.is_some() {
        let mut verifier = WebhookVerifier::new();
        for (stack, secret) in hmac_secrets {
            let secret = HmacSecret::new(secret)?;
            verifier = match stack {
                Some(stack) => verifier.with_stack_hmac_secret(stack, secret),
                None => {
                    tracing::warn!(
                        "an HMAC secret in CONTENTSTACK_HMAC_SECRETS is bound to no stack: whoever holds it signs for any stack; write API_KEY=secret"
                    );
                    verifier.with_hmac_secret(secret)
                }
            };
        }
        let route = match public_key {
            Some(path) => {
                let keys = StaticKeys::from_file(&path)
                    .map_err(|e| format!("CONTENTSTACK_PUBLIC_KEY ({path}): {e}"))?;
                contentstack(ContentstackWebhookLayer::new(verifier, keys), accept)
            }
            None => contentstack(ContentstackWebhookLayer::hmac(verifier)?, accept),
        };
        router = router.route("/webhooks/contentstack", route);
    } else if !router.has_routes() {
        return Err("nothing to receive: set CONTENTFUL_SIGNING_SECRETS, \
                    CONTENTSTACK_HMAC_SECRETS or CONTENTSTACK_PUBLIC_KEY"
            .into());
    }
    let mut target = LambdaTargetLayer::new();
    if let Some(prefix) = &prefix {
        target = target.with_prefix(prefix)?;
    }
    Ok(target.layer(router))
}

/// The Contentstack route: `accept` behind `layer`, whatever its key source.
fn contentstack<K: KeySource + Clone + Send + Sync + 'static>(
    layer: ContentstackWebhookLayer<K>,
    accept: axum::routing::MethodRouter,
) -> axum::routing::MethodRouter {
    accept.layer(layer)
}

/// Commits a verified delivery to the inbox and answers it, or answers it unkept without one.
async fn accept(inbox: Option<AnyInbox>, request: Request) -> Response {
    match inbox {
        Some(inbox) => inbox.acknowledge(request).await,
        None => axum::Json(json!({"status": "accepted"})).into_response(),
    }
}

/// What the worker does with each delivery, once: here, it logs what it is. Put your own
/// handling here, written by [`InboxDelivery::id`] so that a second run changes nothing.
async fn handle(delivery: InboxDelivery) -> Result<(), BoxError> {
    let topic = delivery
        .signed_header("x-contentful-topic")
        .map(str::to_owned);
    tracing::info!(
        id = %delivery.id,
        provider = delivery.provider.as_str(),
        tenant = delivery.tenant.as_deref().unwrap_or("-"),
        topic = topic.as_deref().unwrap_or("-"),
        bytes = delivery.body.len(),
        "handled"
    );
    Ok(())
}

/// One scheduled invocation of the worker: hands the inbox's deliveries to [`handle`] until
/// none is waiting, or until [`WORKER_MARGIN`] before `deadline`; answers how many it handled
/// and how many wait for the next invocation.
async fn drain(inbox: AnyInbox, deadline: SystemTime) -> Result<Value, Error> {
    let handled = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&handled);
    let workers = inbox.work(WORKERS, move |delivery| {
        let counted = Arc::clone(&counted);
        async move {
            handle(delivery).await?;
            counted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    });
    let stop_at = deadline.checked_sub(WORKER_MARGIN).unwrap_or(deadline);
    let waiting = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stats = inbox.stats().await?;
        if stats.pending + stats.leased == 0 || SystemTime::now() >= stop_at {
            break stats.pending + stats.leased;
        }
    };
    // A delivery being handled finishes; one not begun waits for the next invocation.
    workers.shutdown(WORKER_MARGIN / 2).await;
    Ok(json!({"handled": handled.load(Ordering::Relaxed), "waiting": waiting}))
}
