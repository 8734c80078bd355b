//! The replay guard with Redis, against a real `redis-server` this test starts on a free
//! loopback port: two app instances share it, it is stopped and restarted mid-test.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use common::*;
use countersign::ContentstackWebhookLayer;
use countersign::contentstack::{StaticKeys, WebhookVerifier};
use countersign::replay::{
    Claim, Owner, RedisStore, ReplayGuardLayer, ReplayKey, ReplayStore, UnavailablePolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceBuilder;

/// A `redis-server` on a loopback port, stopped when dropped.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self { port, child: None };
        server.restart().await;
        server
    }

    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn ping(&self) -> bool {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        matches!(stream.read(&mut buf).await, Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An app instance: verification, then the replay guard on `store`; counts what it handled.
async fn instance(
    store: RedisStore,
    handled: Arc<AtomicUsize>,
    failures: Arc<AtomicUsize>,
    delay: Duration,
) -> String {
    let handler = post(move || {
        let (handled, failures) = (handled.clone(), failures.clone());
        async move {
            tokio::time::sleep(delay).await;
            // Fail while failures are left to inject.
            if failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
                .is_ok()
            {
                return (StatusCode::INTERNAL_SERVER_ERROR, "failed");
            }
            handled.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, "handled")
        }
    });
    let layers = ServiceBuilder::new()
        .layer(ContentstackWebhookLayer::new(
            WebhookVerifier::new(),
            StaticKeys::parse(PUBLIC_A).unwrap(),
        ))
        .layer(ReplayGuardLayer::new(store));
    format!(
        "http://{}/hook",
        serve(Router::new().route("/hook", handler.layer(layers))).await
    )
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

fn counters() -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_handled_by_a_and_replayed_to_b_is_acknowledged_not_handled() {
    let redis = RedisServer::start().await;
    let (handled, failures) = counters();
    let a = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures.clone(),
        Duration::ZERO,
    )
    .await;
    let b = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures.clone(),
        Duration::ZERO,
    )
    .await;
    let delivery = delivery();
    assert_eq!(send(&a, &delivery).await.status(), 200);
    let replay = send(&b, &delivery).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["x-countersign-replay"], "duplicate");
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_on_both_instances_are_handled_exactly_once() {
    let redis = RedisServer::start().await;
    let (handled, failures) = counters();
    let delay = Duration::from_millis(300);
    let a = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures.clone(),
        delay,
    )
    .await;
    let b = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures.clone(),
        delay,
    )
    .await;
    let delivery = Arc::new(delivery());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let url = if i % 2 == 0 { a.clone() } else { b.clone() };
            let delivery = delivery.clone();
            tokio::spawn(async move { send(&url, &delivery).await.status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(handled.load(Ordering::SeqCst), 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_handler_failure_followed_by_the_retry_is_handled_once() {
    let redis = RedisServer::start().await;
    let (handled, failures) = counters();
    failures.store(1, Ordering::SeqCst);
    let a = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures.clone(),
        Duration::ZERO,
    )
    .await;
    let b = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures.clone(),
        Duration::ZERO,
    )
    .await;
    let delivery = delivery();
    assert_eq!(send(&a, &delivery).await.status(), 500);
    // The sender retries; another instance takes it.
    assert_eq!(send(&b, &delivery).await.status(), 200);
    assert_eq!(
        send(&a, &delivery).await.headers()["x-countersign-replay"],
        "duplicate"
    );
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_fails_closed_then_recovers_when_it_is_back() {
    let mut redis = RedisServer::start().await;
    let (handled, failures) = counters();
    let url = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures,
        Duration::ZERO,
    )
    .await;
    assert_eq!(send(&url, &delivery()).await.status(), 200);

    redis.stop();
    let (status, p) = problem(send(&url, &delivery()).await).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (503, Some("replay_store_unavailable"))
    );
    assert_eq!(
        handled.load(Ordering::SeqCst),
        1,
        "nothing is handled unprotected"
    );

    redis.restart().await;
    let mut recovered = false;
    for _ in 0..50 {
        if send(&url, &delivery()).await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the connection manager reconnected");
}

#[tokio::test]
async fn fail_open_passes_requests_on_while_redis_is_down() {
    let mut redis = RedisServer::start().await;
    let store = RedisStore::new(&redis.url())
        .unwrap()
        .with_unavailable_policy(UnavailablePolicy::FailOpen);
    let (handled, failures) = counters();
    let url = instance(store, handled.clone(), failures, Duration::ZERO).await;
    redis.stop();
    assert_eq!(send(&url, &delivery()).await.status(), 200);
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn claims_are_leases_and_only_the_owner_renews_or_settles_one() {
    let redis = RedisServer::start().await;
    let store = RedisStore::new(&redis.url()).unwrap().with_prefix("test:");
    let key = ReplayKey::from_bytes([7u8; 32]);
    let (mine, theirs) = (Owner::from_token("mine"), Owner::from_token("theirs"));
    let lease = Duration::from_millis(400);
    assert_eq!(
        store.claim(&key, &mine, lease).await.unwrap(),
        Claim::Claimed
    );
    assert_eq!(
        store.claim(&key, &mine, lease).await.unwrap(),
        Claim::Claimed,
        "a claim is idempotent for its owner"
    );
    assert_eq!(
        store.claim(&key, &theirs, lease).await.unwrap(),
        Claim::InFlight
    );
    assert!(!store.renew(&key, &theirs, lease).await.unwrap());
    store.release(&key, &theirs).await.unwrap();
    store.complete(&key, &theirs, lease).await.unwrap();
    assert_eq!(
        store.claim(&key, &theirs, lease).await.unwrap(),
        Claim::InFlight,
        "not theirs to renew or settle"
    );
    // Renewed, the lease outlives its first end; unrenewed, it lapses.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(store.renew(&key, &mine, lease).await.unwrap());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        store.claim(&key, &theirs, lease).await.unwrap(),
        Claim::InFlight
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store.claim(&key, &theirs, lease).await.unwrap(),
        Claim::Claimed,
        "the lease lapsed"
    );
    assert!(
        !store.renew(&key, &mine, lease).await.unwrap(),
        "and mine is gone"
    );

    // Done entries live for their TTL.
    store.complete(&key, &theirs, lease).await.unwrap();
    assert_eq!(store.claim(&key, &mine, lease).await.unwrap(), Claim::Done);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        store.claim(&key, &mine, lease).await.unwrap(),
        Claim::Claimed,
        "expired with its TTL"
    );
}
