//! The servers of the end-to-end benchmark: the same axum endpoint bare, behind the Contentful
//! layer, and behind the Contentstack webhook layer; and the Contentful layer answering from a
//! SQLite inbox (verify, commit, acknowledge), whose handler is instant (`inbox-sqlite`) or
//! takes 60 s (`inbox-sqlite-slow`).
//!
//! `bench-server <bare|contentful|contentstack|uploads|inbox-sqlite|inbox-sqlite-slow> <addr>`

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{post, post_service};
use countersign::contentful::{RequestVerifier, SigningSecret};
use countersign::contentstack::{StaticKeys, WebhookVerifier};
use countersign::inbox::{Inbox, InboxDelivery, SqliteInbox};
use countersign::{ContentfulRequestLayer, ContentstackWebhookLayer};

const PUBLIC: &str =
    include_str!("../../../crates/countersign-core/tests/data/keys/contentstack-a.public.pem");
const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

async fn handler(body: Bytes) -> String {
    format!("ok {}", body.len())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, addr) = (args[1].as_str(), args[2].as_str());
    let route = post(handler);
    let mut _workers = None;
    let app = match mode {
        "bare" => Router::new().route("/webhook", route),
        "contentful" => Router::new().route(
            "/webhook",
            route.layer(ContentfulRequestLayer::new(RequestVerifier::new(
                SigningSecret::new(SECRET).unwrap(),
            ))),
        ),
        "contentstack" => Router::new().route(
            "/webhook",
            route.layer(ContentstackWebhookLayer::new(
                WebhookVerifier::new().with_tolerance(Duration::from_secs(24 * 3600)),
                StaticKeys::parse(PUBLIC).unwrap(),
            )),
        ),
        "uploads" => Router::new().route(
            "/webhook",
            route.layer(
                ContentfulRequestLayer::new(RequestVerifier::new(
                    SigningSecret::new(SECRET).unwrap(),
                ))
                .with_body_limit(1024 * 1024)
                .with_read_timeout(Duration::from_secs(60)),
            ),
        ),
        "inbox-sqlite" | "inbox-sqlite-slow" => {
            let dir = std::env::temp_dir().join(format!("bench-inbox-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            // Every request is its own delivery of one tenant: no limit, so that none is refused.
            let inbox = Inbox::new(SqliteInbox::open(dir.join("inbox.sqlite3")).unwrap())
                .with_tenant_limit(u64::MAX)
                .with_tenant_concurrency(u64::MAX);
            let handler_takes = if mode == "inbox-sqlite-slow" {
                Duration::from_secs(60)
            } else {
                Duration::ZERO
            };
            let workers = inbox.work(4, move |_: InboxDelivery| async move {
                tokio::time::sleep(handler_takes).await;
                Ok(())
            });
            // The workers run while the server does.
            _workers = Some(workers);
            Router::new().route(
                "/webhook",
                post_service(inbox.acknowledge()).layer(ContentfulRequestLayer::new(
                    RequestVerifier::new(SigningSecret::new(SECRET).unwrap()),
                )),
            )
        }
        other => panic!("unknown mode {other}"),
    };
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}
