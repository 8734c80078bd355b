//! Contentful app events and Contentstack webhooks as one AWS Lambda function: each request
//! verified before any handler runs (Contentful's on the path and query its sender signed, as
//! the trigger's event keeps them), then committed once to a durable inbox and answered at
//! once.
//!
//! - `POST /contentful/events`: Contentful app events, app actions and webhooks.
//! - `POST /webhooks/contentstack`: Contentstack webhooks (HMAC, and RSA with a public key).
//!
//! The settings, the stores and the worker role (`LAMBDA_APP_ROLE=worker`, which hands the
//! inbox's deliveries to [`handle`]) are in this example's README.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use countersign::contentful::{RequestKinds, RequestVerifier, SigningSecret};
use countersign::contentstack::{HmacSecret, StackAllowlist, StaticKeys, Tenancy, WebhookVerifier};
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

/// How long before its invocation's deadline a worker's purge is given up (what it forgot
/// in the batches before stays forgotten).
const PURGE_MARGIN: Duration = Duration::from_secs(2);

/// The longest a worker invocation purges: a backlog of rows past their time (the first
/// purge after a long while) is forgotten over several invocations, and each of them leaves
/// the next scheduled one its turn.
const PURGE_AT_MOST: Duration = Duration::from_secs(20);

/// The least time left for which a worker invocation starts a purge at all.
const PURGE_AT_LEAST: Duration = Duration::from_millis(500);

/// How many deliveries a worker handles at once.
const WORKERS: usize = 4;

/// Polls of the inbox (200 ms apart) with nothing handled or held after which a worker
/// invocation ends: longer than the workers' own poll of the inbox.
const IDLE_POLLS: u32 = 5;

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
    match var("LAMBDA_APP_ROLE").as_deref().unwrap_or("http") {
        // One request at a time: its commit, and the inbox's read of the tenants near their
        // limit, which runs beside a commit at most once a second.
        "http" => lambda_http::run(function(inbox(2)?)?).await,
        "worker" => {
            // Each worker's connection, and one for the leases and the inbox's stats.
            let inbox =
                inbox(WORKERS + 1)?.ok_or("the worker needs DATABASE_URL, the inbox it drains")?;
            let worker = lambda_runtime::service_fn(move |event: LambdaEvent<Value>| {
                drain(inbox.clone(), event.context.deadline())
            });
            lambda_runtime::run(worker).await
        }
        other => Err(format!("LAMBDA_APP_ROLE: `{other}` is neither http nor worker").into()),
    }
}

/// The inbox `DATABASE_URL` names, if any, with at most `connections` to PostgreSQL.
fn inbox(connections: usize) -> Result<Option<AnyInbox>, Error> {
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
    // Kept between invocations, and checked before it is used again (a frozen instance's
    // connection may be gone).
    pool.resize(connections);
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
    let webhook_secrets = bound("CONTENTFUL_WEBHOOK_SECRETS", "SPACE_ID")?;
    if let Some(secrets) = var("CONTENTFUL_SIGNING_SECRETS") {
        let secrets = secrets
            .split(',')
            .map(|secret| SigningSecret::new(secret.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut verifier = RequestVerifier::with_secrets(secrets)?.with_kinds(RequestKinds::EVENTS);
        // A space's webhook secret is its admins' choice: it verifies that space's webhooks
        // only, never an app event.
        for (space, secret) in webhook_secrets {
            verifier = verifier.with_space_webhook_secret(space, SigningSecret::new(secret)?);
        }
        if let Some(prefix) = &prefix {
            verifier = verifier.with_path_prefix(prefix)?;
        }
        let layer = ContentfulRequestLayer::new(verifier);
        router = router.route("/contentful/events", accept.clone().layer(layer));
    } else if !webhook_secrets.is_empty() {
        return Err(
            "CONTENTFUL_WEBHOOK_SECRETS needs CONTENTFUL_SIGNING_SECRETS, the app's".into(),
        );
    }
    let hmac_secrets = bound("CONTENTSTACK_HMAC_SECRETS", "API_KEY")?;
    let public_key = var("CONTENTSTACK_PUBLIC_KEY");
    if !hmac_secrets.is_empty() || public_key.is_some() {
        // Ours: the stacks with a secret, and those named for RSA. Contentstack's key signs
        // every customer's webhooks: without this list, any stack could fill the inbox.
        let mut stacks: Vec<String> = var("CONTENTSTACK_STACKS")
            .map(|list| list.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default();
        if public_key.is_some() && stacks.is_empty() {
            return Err(
                "CONTENTSTACK_PUBLIC_KEY needs CONTENTSTACK_STACKS, the API keys of the \
                        stacks whose RSA-signed webhooks are this app's"
                    .into(),
            );
        }
        let mut verifier = WebhookVerifier::new();
        for (stack, secret) in hmac_secrets {
            stacks.push(stack.clone());
            verifier = verifier.with_stack_hmac_secret(stack, HmacSecret::new(secret)?);
        }
        let tenancy = Tenancy::new().with_stacks(StackAllowlist::new(stacks));
        let route = match public_key {
            Some(path) => {
                let keys = StaticKeys::from_file(&path)
                    .map_err(|e| format!("CONTENTSTACK_PUBLIC_KEY ({path}): {e}"))?;
                let layer = ContentstackWebhookLayer::new(verifier, keys);
                accept.layer(layer.with_tenancy(tenancy))
            }
            None => accept.layer(ContentstackWebhookLayer::hmac(verifier)?.with_tenancy(tenancy)),
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

/// The `TENANT=secret` pairs of the variable `name`: each secret bound to its tenant, since
/// one bound to none would sign for every tenant.
fn bound(name: &str, tenant: &str) -> Result<Vec<(String, String)>, Error> {
    example_support::tenant_secrets(var(name))
        .map_err(|e| format!("{name}: {e}"))?
        .into_iter()
        .map(|(owner, secret)| {
            owner
                .map(|owner| (owner, secret))
                .ok_or_else(|| format!("{name}: each entry is {tenant}=secret").into())
        })
        .collect()
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
/// none is waiting, or until [`WORKER_MARGIN`] before `deadline`, then forgets the handled
/// deliveries past their time; answers how many it handled, how many wait for the next
/// invocation and how many it forgot (`null` when the purge failed, ran out of time or had
/// no time left).
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
    // Done when nothing is waiting, or when nothing was handled or held for a while: what
    // still waits is backing off before its next attempt, for a later invocation.
    let (mut idle, mut last) = (0, 0);
    let waiting = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stats = match inbox.stats().await {
            Ok(stats) => stats,
            Err(error) => {
                workers.shutdown(WORKER_MARGIN / 2).await;
                return Err(error);
            }
        };
        let now = handled.load(Ordering::Relaxed);
        idle = if stats.leased == 0 && now == last {
            idle + 1
        } else {
            0
        };
        last = now;
        let waiting = stats.pending + stats.leased;
        if waiting == 0 || idle >= IDLE_POLLS || SystemTime::now() >= stop_at {
            break waiting;
        }
    };
    // A delivery being handled finishes; one not begun waits for the next invocation.
    workers.shutdown(WORKER_MARGIN / 2).await;
    // The workers purge one period after they start, which an invocation rarely lives to
    // see: each invocation forgets what is past its time before it ends, in what time is left.
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(PURGE_MARGIN)
        .min(PURGE_AT_MOST);
    let forgotten = if left < PURGE_AT_LEAST {
        tracing::warn!("no time was left to forget the handled deliveries past their time");
        None
    } else {
        match tokio::time::timeout(left, inbox.purge()).await {
            Ok(Ok(forgotten)) => Some(forgotten),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not forget the handled deliveries past their time");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "the purge of the handled deliveries past their time ran out of time"
                );
                None
            }
        }
    };
    Ok(json!({
        "handled": handled.load(Ordering::Relaxed),
        "waiting": waiting,
        "forgotten": forgotten,
    }))
}
