//! The replay guard with Redis, against a real `redis-server` this test starts on a free
//! loopback port: two app instances share it, it is stopped and restarted mid-test, a reply
//! is lost on the way, and an instance running as its own process is killed mid-handler.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
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

use lost_reply::LossyProxy;
use processes::{Node, attempt, records_file};

mod fleet;
mod instances;
mod lost_reply;
mod processes;
mod settling;
