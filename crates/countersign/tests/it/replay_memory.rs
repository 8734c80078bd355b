//! The replay guard with the in-memory store, end to end behind the verification layers.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use countersign::contentful::{Context, RequestVerifier, SigningSecret};
use countersign::contentstack::{StaticKeys, WebhookVerifier};
use countersign::replay::{
    FullPolicy, MemoryStore, Owner, ReplayGuardLayer, ReplayKey, ReplayStore,
};
use countersign::{ContentfulRequestLayer, ContentstackWebhookLayer};
use tower::ServiceBuilder;

/// A server whose handler counts how often it ran and answers `statuses` in turn (then 200).
async fn contentstack_server(
    store: MemoryStore,
    statuses: Vec<u16>,
    delay: Duration,
) -> (String, Arc<AtomicUsize>) {
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let statuses = Arc::new(std::sync::Mutex::new(statuses));
    let handler = post(move || {
        let (counter, statuses) = (counter.clone(), statuses.clone());
        async move {
            tokio::time::sleep(delay).await;
            let status = statuses.lock().unwrap().pop().unwrap_or(200);
            if status == 200 {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            (StatusCode::from_u16(status).unwrap(), "handled")
        }
    });
    let layers = ServiceBuilder::new()
        .layer(ContentstackWebhookLayer::new(
            WebhookVerifier::new(),
            StaticKeys::parse(PUBLIC_A).unwrap(),
        ))
        .layer(ReplayGuardLayer::new(store));
    let app = Router::new().route("/hook", handler.layer(layers));
    (format!("http://{}/hook", serve(app).await), handled)
}

fn delivery() -> (String, String) {
    let body = webhook_body(Duration::from_secs(1), r#"{"entry":{"uid":"blt1"}}"#);
    let signature = rsa_signature(PRIVATE_A, &body);
    (body, signature)
}

async fn send(url: &str, (body, signature): &(String, String)) -> reqwest::Response {
    client()
        .post(url)
        .header("x-contentstack-request-signature", signature)
        .body(body.clone())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_replay_of_a_handled_delivery_is_acknowledged_not_handled() {
    let (url, handled) = contentstack_server(MemoryStore::new(100), vec![], Duration::ZERO).await;
    let first = delivery();
    assert_eq!(send(&url, &first).await.status(), 200);
    let replay = send(&url, &first).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["x-countersign-replay"], "duplicate");
    assert_eq!(replay.text().await.unwrap(), r#"{"status":"duplicate"}"#);
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    // Another delivery is handled.
    assert_eq!(
        send(&url, &delivery())
            .await
            .headers()
            .get("x-countersign-replay"),
        None
    );
    assert_eq!(handled.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_are_handled_exactly_once() {
    let (url, handled) =
        contentstack_server(MemoryStore::new(100), vec![], Duration::from_millis(300)).await;
    let delivery = Arc::new(delivery());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (url, delivery) = (url.clone(), delivery.clone());
            tokio::spawn(async move {
                let response = send(&url, &delivery).await;
                let retry_after = response.headers().get("retry-after").cloned();
                (response.status().as_u16(), retry_after)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let (status, retry_after) = task.await.unwrap();
        if status == 409 {
            assert_eq!(retry_after.unwrap(), "5");
        }
        statuses.push(status);
    }
    assert_eq!(handled.load(Ordering::SeqCst), 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&409),
        "some arrived while the first was in flight: {statuses:?}"
    );
}

#[tokio::test]
async fn a_failed_delivery_is_released_so_the_retry_is_handled_once() {
    // The handler fails with 500 the first time, answers 503 the second, then succeeds.
    let (url, handled) =
        contentstack_server(MemoryStore::new(100), vec![503, 500], Duration::ZERO).await;
    let delivery = delivery();
    assert_eq!(send(&url, &delivery).await.status(), 500);
    assert_eq!(send(&url, &delivery).await.status(), 503);
    assert_eq!(send(&url, &delivery).await.status(), 200);
    assert_eq!(
        send(&url, &delivery).await.headers()["x-countersign-replay"],
        "duplicate"
    );
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_4xx_from_the_handler_releases_the_delivery_too() {
    let (url, handled) =
        contentstack_server(MemoryStore::new(100), vec![422], Duration::ZERO).await;
    let delivery = delivery();
    assert_eq!(send(&url, &delivery).await.status(), 422);
    assert_eq!(send(&url, &delivery).await.status(), 200);
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_full_store_refuses_new_deliveries_with_503() {
    let (url, _) = contentstack_server(MemoryStore::new(1), vec![], Duration::ZERO).await;
    assert_eq!(send(&url, &delivery()).await.status(), 200);
    let (status, p) = problem(send(&url, &delivery()).await).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (503, Some("replay_store_full"))
    );
}

#[tokio::test]
async fn without_a_verification_layer_the_guard_explains_the_misconfiguration() {
    let app = Router::new().route(
        "/hook",
        post(|| async { "x" }).layer(ReplayGuardLayer::new(MemoryStore::new(10))),
    );
    let url = format!("http://{}/hook", serve(app).await);
    let (status, p) = problem(client().post(&url).body("{}").send().await.unwrap()).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (500, Some("replay_identity_missing"))
    );
}

#[tokio::test]
async fn contentful_retries_share_the_signed_idempotency_key() {
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let layers = ServiceBuilder::new()
        .layer(ContentfulRequestLayer::new(RequestVerifier::new(
            SigningSecret::new(SECRET).unwrap(),
        )))
        .layer(ReplayGuardLayer::new(MemoryStore::new(100)));
    let app = Router::new().route(
        "/hook",
        post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        })
        .layer(layers),
    );
    let base = format!("http://{}", serve(app).await);
    // Contentful signs each attempt afresh; the idempotency key stays.
    for attempt in 0..2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut request = client()
            .post(format!("{base}/hook"))
            .header("x-contentful-idempotency-key", "delivery-77");
        let signed = countersign::contentful::sign(
            &SigningSecret::new(SECRET).unwrap(),
            &countersign::contentful::RequestToSign::new(http::Method::POST, "/hook")
                .with_header("x-contentful-idempotency-key", "delivery-77")
                .with_body(b"{}"),
            std::time::SystemTime::now(),
            &Context::default(),
        )
        .unwrap();
        for (name, value) in signed.iter() {
            request = request.header(name, value);
        }
        let response = request.body("{}").send().await.unwrap();
        assert_eq!(response.status(), 200, "attempt {attempt}");
        assert_eq!(
            response.headers().get("x-countersign-replay").is_some(),
            attempt == 1
        );
    }
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_memory_bound_holds_for_a_million_unique_keys() {
    const CAPACITY: usize = 100_000;
    for policy in [FullPolicy::EvictOldest, FullPolicy::RefuseNew] {
        // One tenant (partition 0) may fill it all here.
        let store = MemoryStore::new(CAPACITY)
            .with_tenant_share(CAPACITY)
            .with_full_policy(policy);
        let before = rss_kib();
        let owner = Owner::from_token("test");
        for n in 0..1_000_000u64 {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&n.to_le_bytes());
            store
                .claim(
                    &ReplayKey::from_bytes(digest),
                    &owner,
                    Duration::from_secs(600),
                )
                .await
                .unwrap();
            assert!(store.len() <= CAPACITY);
        }
        assert_eq!(store.len(), CAPACITY);
        let after = rss_kib();
        println!(
            "{policy:?}: 1,000,000 unique keys, capacity {CAPACITY}: {} entries, RSS grew {} KiB ({:.0} bytes/entry)",
            store.len(),
            after.saturating_sub(before),
            after.saturating_sub(before) as f64 * 1024.0 / CAPACITY as f64
        );
    }
}

#[tokio::test]
async fn a_guard_behind_signatures_that_never_expire_refuses_instead_of_forgetting() {
    // Contentful with the TTL off: a signature verifies forever, so an entry kept for any
    // finite time (24 h, before) lets a captured request replay once it lapses.
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handled);
    let layers = ServiceBuilder::new()
        .layer(ContentfulRequestLayer::new(
            RequestVerifier::new(SigningSecret::new(SECRET).unwrap()).with_ttl(Duration::ZERO),
        ))
        .layer(ReplayGuardLayer::new(MemoryStore::new(100)));
    let app = Router::new().route(
        "/hook",
        post(move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "handled"
        })
        .layer(layers),
    );
    let base = format!("http://{}", serve(app).await);
    let headers = contentful_headers(SECRET, "POST", "/hook", b"{}", &Context::default());
    let mut request = client().post(format!("{base}/hook")).body("{}");
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let (status, p) = problem(request.send().await.unwrap()).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (500, Some("replay_window_unbounded"))
    );
    assert_eq!(handled.load(Ordering::SeqCst), 0);
}
