//! The servers of the end-to-end benchmark: the same axum endpoint bare, behind the Contentful
//! layer, and behind the Contentstack webhook layer; and the Contentful layer answering from a
//! SQLite inbox (verify, commit, acknowledge), whose handler is instant (`inbox-sqlite`) or
//! takes 60 s (`inbox-sqlite-slow`), or from a PostgreSQL inbox at `BENCH_DATABASE_URL`
//! (`inbox-postgres`, handler instant; `inbox-postgres-ack`, no workers: the request path
//! alone, as the Express peer). The inbox's servers answer `GET /inbox` with how many
//! deliveries are pending, leased and dead.
//!
//! `bench-server <bare|contentful|contentstack|uploads|inbox-sqlite|inbox-sqlite-slow|inbox-postgres|inbox-postgres-ack> <addr>`

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post, post_service};
use countersign::contentful::{RequestVerifier, SigningSecret};
use countersign::contentstack::{StaticKeys, WebhookVerifier};
use countersign::{ContentfulRequestLayer, ContentstackWebhookLayer};
use countersign_inbox::{Inbox, InboxDelivery, InboxStore, PostgresInbox, SqliteInbox, Workers};

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
            let handler_takes = if mode == "inbox-sqlite-slow" {
                Duration::from_secs(60)
            } else {
                Duration::ZERO
            };
            let store = SqliteInbox::open(dir.join("inbox.sqlite3")).unwrap();
            let (router, workers) = from_inbox(store, handler_takes);
            _workers = Some(workers);
            router
        }
        "inbox-postgres" | "inbox-postgres-ack" => {
            let url = std::env::var("BENCH_DATABASE_URL").expect("BENCH_DATABASE_URL");
            let manager = deadpool_postgres::Manager::from_config(
                url.parse().unwrap(),
                tokio_postgres::NoTls,
                deadpool_postgres::ManagerConfig {
                    recycling_method: deadpool_postgres::RecyclingMethod::Fast,
                },
            );
            let pool = deadpool_postgres::Pool::builder(manager)
                .max_size(16)
                .build()
                .unwrap();
            let (router, workers) = from_inbox(PostgresInbox::new(pool), Duration::ZERO);
            // `-ack`: the request path alone (verify, commit, acknowledge), no worker taking
            // the deliveries, as the Express peer does.
            if mode == "inbox-postgres" {
                _workers = Some(workers);
            }
            router
        }
        other => panic!("unknown mode {other}"),
    };
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

/// The Contentful layer answering from an inbox over `store`, its handler taking
/// `handler_takes`. Every request is its own delivery of one tenant: no limit (so that none is
/// refused, and nothing is counted), unless `BENCH_TENANT_LIMIT` sets one.
fn from_inbox(store: impl InboxStore, handler_takes: Duration) -> (Router, Workers) {
    let inbox = Inbox::new(store).with_tenant_concurrency(u64::MAX);
    let inbox = match std::env::var("BENCH_TENANT_LIMIT") {
        Ok(limit) => inbox.with_tenant_limit(limit.parse().unwrap()),
        Err(_) => inbox.without_tenant_limit(),
    };
    let workers = std::env::var("BENCH_WORKERS").map_or(4, |n| n.parse().unwrap());
    let workers = inbox.work(workers, move |_: InboxDelivery| async move {
        tokio::time::sleep(handler_takes).await;
        Ok(())
    });
    let router = Router::new()
        .route(
            "/webhook",
            post_service(inbox.acknowledge()).layer(ContentfulRequestLayer::new(
                RequestVerifier::new(SigningSecret::new(SECRET).unwrap()),
            )),
        )
        // What is still to handle, for the benchmark's count of deliveries handled.
        .route(
            "/inbox",
            get(move || {
                let inbox = inbox.clone();
                async move {
                    let stats = inbox.stats().await.unwrap();
                    format!("{} {} {}", stats.pending, stats.leased, stats.dead)
                }
            }),
        );
    (router, workers)
}
