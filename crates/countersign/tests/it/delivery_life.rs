//! A delivery's whole life through the real layers on a real server: retries the provider signs
//! afresh, a handler whose client goes away, a handler longer than its lease, deliveries that
//! are authentic but meant for another app, and the delivery id handlers read.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use axum::Router;
use axum::routing::post;
use countersign::contentstack::{
    HmacSecret, SaltLength, SigningKey, StackAllowlist, StaticKeys, Tenancy, TenantUnavailable,
    WebhookVerifier, stack_check_fn,
};
use countersign::replay::{DeliveryId, MemoryStore, ReplayGuardLayer};
use countersign::{ContentstackWebhook, ContentstackWebhookLayer};
use tokio::io::AsyncWriteExt;
use tower::ServiceBuilder;

const DATA: &str = r#"{"entry":{"uid":"blt1"}}"#;

/// What a server saw: how often its handler started and finished, and the ids it was given.
#[derive(Default)]
struct Seen {
    started: AtomicUsize,
    finished: AtomicUsize,
    ids: std::sync::Mutex<Vec<String>>,
}

/// A webhook server: verification (with `tenancy`), the replay guard on `store` with `lease`,
/// and a handler that takes `delay`.
async fn server(
    tenancy: Option<Tenancy<StackAllowlist>>,
    store: Arc<MemoryStore>,
    lease: Duration,
    delay: Duration,
) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let counter = seen.clone();
    let handler = post(
        move |DeliveryId(id): DeliveryId, webhook: ContentstackWebhook| {
            let seen = counter.clone();
            async move {
                seen.started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                assert_eq!(webhook.delivery_id(), id.to_hex());
                seen.ids.lock().unwrap().push(id.to_hex());
                seen.finished.fetch_add(1, Ordering::SeqCst);
                "handled"
            }
        },
    );
    let verifier = WebhookVerifier::new().with_hmac_secret(HmacSecret::new("hmac-secret").unwrap());
    let verification =
        ContentstackWebhookLayer::new(verifier, StaticKeys::parse(PUBLIC_A).unwrap());
    let layers = ServiceBuilder::new()
        .layer(match tenancy {
            Some(tenancy) => verification.with_tenancy(tenancy),
            None => {
                verification.with_tenancy(Tenancy::new().with_stacks(StackAllowlist::new(["blt1"])))
            }
        })
        .layer(ReplayGuardLayer::new(store).with_lease(lease));
    let app = Router::new().route("/hook", handler.layer(layers));
    (format!("http://{}/hook", serve(app).await), seen)
}

async fn send_signed(url: &str, body: &str, header: (&str, &str)) -> reqwest::Response {
    client()
        .post(url)
        .header(header.0, header.1)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Signs `body` afresh, as Contentstack does for each attempt, and sends it.
async fn attempt(url: &str, body: &str, salt: SaltLength) -> reqwest::Response {
    let signature = SigningKey::from_pem(PRIVATE_A)
        .unwrap()
        .sign_webhook(body.as_bytes(), salt)
        .unwrap();
    send_signed(url, body, ("x-contentstack-request-signature", &signature)).await
}

fn long() -> Duration {
    Duration::from_secs(60)
}

#[tokio::test]
async fn a_retry_signed_afresh_is_acknowledged_not_handled_again() {
    let store = Arc::new(MemoryStore::new(100));
    let (url, seen) = server(None, store, long(), Duration::ZERO).await;
    let body = webhook_body(Duration::from_secs(1), DATA);
    assert_eq!(attempt(&url, &body, SaltLength::Digest).await.status(), 200);
    for salt in [SaltLength::Digest, SaltLength::Max] {
        let retry = attempt(&url, &body, salt).await;
        assert_eq!(retry.status(), 200);
        assert_eq!(retry.headers()["x-countersign-replay"], "duplicate");
    }
    // The same delivery signed by the HMAC method, with a fresh t, and one element of two.
    let hmac = HmacSecret::new("hmac-secret")
        .unwrap()
        .sign(body.as_bytes(), std::time::SystemTime::now());
    let with_old = format!("{hmac},v1={}", "0".repeat(64));
    let retry = send_signed(&url, &body, ("x-contentstack-hmac-signature", &with_old)).await;
    assert_eq!(retry.headers()["x-countersign-replay"], "duplicate");
    assert_eq!(seen.finished.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_delivery_id_is_the_same_for_every_form_and_reaches_the_handler() {
    let store = Arc::new(MemoryStore::new(100));
    let (url, seen) = server(None, store, long(), Duration::ZERO).await;
    let body = webhook_body(Duration::from_secs(1), DATA);
    assert_eq!(attempt(&url, &body, SaltLength::Digest).await.status(), 200);
    let other = webhook_body(Duration::from_secs(2), DATA);
    assert_eq!(attempt(&url, &other, SaltLength::Max).await.status(), 200);
    let ids = seen.ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 2);
    assert!(
        ids.iter()
            .all(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    );
    assert_ne!(ids[0], ids[1], "two events, two ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_mid_handler_releases_the_delivery_for_the_next_retry() {
    // A long lease: only the release on drop can free the claim within this test.
    let store = Arc::new(MemoryStore::new(100));
    let (url, seen) = server(None, store.clone(), long(), Duration::from_secs(2)).await;
    let body = webhook_body(Duration::from_secs(1), DATA);
    let signature = SigningKey::from_pem(PRIVATE_A)
        .unwrap()
        .sign_webhook(body.as_bytes(), SaltLength::Digest)
        .unwrap();

    // A raw client sends the delivery and hangs up once the handler has started.
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/hook")
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /hook HTTP/1.1\r\nhost: {addr}\r\nx-contentstack-request-signature: {signature}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    while seen.started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(stream);

    // The next retry (signed afresh) is handled, well before the lease would have lapsed.
    let mut answers = Vec::new();
    for _ in 0..50 {
        let retry = attempt(&url, &body, SaltLength::Digest).await;
        answers.push(retry.status().as_u16());
        if retry.status() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answers.last(), Some(&200), "{answers:?}");
    assert!(
        answers.iter().all(|s| *s == 200 || *s == 409),
        "{answers:?}"
    );
    assert_eq!(
        seen.finished.load(Ordering::SeqCst),
        1,
        "the dropped handler never finished; the retry's did"
    );
    assert_eq!(
        attempt(&url, &body, SaltLength::Digest).await.headers()["x-countersign-replay"],
        "duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_longer_than_its_lease_keeps_the_claim_by_renewing_it() {
    let store = Arc::new(MemoryStore::new(100));
    let lease = Duration::from_secs(1);
    let (url, seen) = server(None, store, lease, Duration::from_millis(3500)).await;
    let body = webhook_body(Duration::from_secs(1), DATA);
    let first = tokio::spawn({
        let (url, body) = (url.clone(), body.clone());
        async move { attempt(&url, &body, SaltLength::Digest).await.status() }
    });
    // Two and a half leases later the first handler still runs: a retry is told it is in
    // flight.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let retry = attempt(&url, &body, SaltLength::Digest).await;
    assert_eq!(retry.status(), 409);
    assert_eq!(retry.headers()["retry-after"], "5");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(seen.started.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_delivery_for_another_stack_is_403_and_reaches_neither_the_store_nor_the_handler() {
    let store = Arc::new(MemoryStore::new(100));
    let tenancy = Tenancy::new()
        .with_app_uid("app-ours")
        .with_stacks(StackAllowlist::new(["blt-ours"]));
    let (url, seen) = server(Some(tenancy), store.clone(), long(), Duration::ZERO).await;
    // webhook_body's stack is blt1: authentic, but not one of ours.
    let foreign = webhook_body(Duration::from_secs(1), DATA);
    let (status, p) = problem(attempt(&url, &foreign, SaltLength::Digest).await).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (403, Some("stack_not_allowed"))
    );

    let install = |app: &str, stack: &str| {
        let data = serde_json::json!({"app_installation": {"app_uid": app, "target": {"type": "stack", "uid": stack}}});
        countersign::contentstack::WebhookBody::new("app_installation", "install")
            .with_api_key(stack)
            .with_data(&data)
            .to_json(std::time::SystemTime::now())
    };
    let (status, p) =
        problem(attempt(&url, &install("app-theirs", "blt-ours"), SaltLength::Digest).await).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (403, Some("app_uid_mismatch"))
    );
    assert_eq!(store.len(), 0, "nothing reached the replay store");
    assert_eq!(seen.started.load(Ordering::SeqCst), 0, "nor the handler");

    // Our app's install of a new stack is accepted: it is how a stack becomes ours.
    let ours = attempt(&url, &install("app-ours", "blt-new"), SaltLength::Digest).await;
    assert_eq!(ours.status(), 200);
    assert_eq!(seen.finished.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stack_check_that_cannot_answer_is_503_so_that_contentstack_retries() {
    let checks = Arc::new(AtomicUsize::new(0));
    let counter = checks.clone();
    let tenancy = Tenancy::new().with_stacks(stack_check_fn(move |_: &str| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err(TenantUnavailable::new(
            "installation records unreachable",
        )))
    }));
    let layer =
        ContentstackWebhookLayer::new(WebhookVerifier::new(), StaticKeys::parse(PUBLIC_A).unwrap())
            .with_tenancy(tenancy);
    let app = Router::new().route("/hook", post(|| async { "handled" }).layer(layer));
    let url = format!("http://{}/hook", serve(app).await);
    let response = attempt(
        &url,
        &webhook_body(Duration::from_secs(1), DATA),
        SaltLength::Digest,
    )
    .await;
    assert!(response.headers().contains_key("retry-after"));
    let (status, p) = problem(response).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (503, Some("tenant_check_unavailable"))
    );
    assert_eq!(checks.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn contentful_retries_signed_afresh_have_one_delivery_id() {
    use countersign::ContentfulRequestLayer;
    use countersign::contentful::{Context, RequestVerifier, SigningSecret};
    // No replay guard here: the handler sees every attempt, and the id it would write by.
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = ids.clone();
    let handler = post(move |DeliveryId(id): DeliveryId| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(id.to_hex());
            "handled"
        }
    });
    let layer =
        ContentfulRequestLayer::new(RequestVerifier::new(SigningSecret::new(SECRET).unwrap()));
    let url = format!(
        "http://{}/events",
        serve(Router::new().route("/events", handler.layer(layer))).await
    );
    let attempt = |idempotency: &'static str| {
        let url = url.clone();
        async move {
            let own = [("x-contentful-idempotency-key", idempotency)];
            let mut request = client().post(&url);
            for (name, value) in own {
                request = request.header(name, value);
            }
            for (name, value) in
                contentful_headers_with(SECRET, "POST", "/events", b"{}", &own, &Context::default())
            {
                request = request.header(name, value);
            }
            assert_eq!(request.body("{}").send().await.unwrap().status(), 200);
        }
    };
    attempt("delivery-1").await;
    tokio::time::sleep(Duration::from_millis(5)).await; // signed at another millisecond
    attempt("delivery-1").await;
    attempt("delivery-2").await;
    let ids = ids.lock().unwrap().clone();
    assert_eq!(ids[0], ids[1], "one delivery, signed afresh");
    assert_ne!(ids[0], ids[2]);
}
