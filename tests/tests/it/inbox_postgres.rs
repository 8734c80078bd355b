//! A fleet's inbox in one real PostgreSQL: three instances acknowledge and handle deliveries
//! from one table, each delivery handled once though sent to several instances, retried after
//! a failure, taken over from instances whose workers die; and 503 while the database is down.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::post_service;
use countersign::ContentstackWebhookLayer;
use countersign::contentstack::WebhookBody;
use countersign::testing::TestKit;
use countersign_inbox::{Backoff, Inbox, InboxDelivery, PostgresInbox, Spool, Workers};
use http::Request;
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the handlers saw: per delivery id, the attempts that failed and those that succeeded.
#[derive(Default)]
struct Seen {
    failed: HashMap<String, u32>,
    handled: HashMap<String, u32>,
}

struct Instance {
    base: String,
    inbox: Inbox<PostgresInbox>,
    workers: Option<Workers>,
}

async fn instance(
    url: &str,
    kit: &TestKit,
    seen: &Arc<Mutex<Seen>>,
    spool: Option<&std::path::Path>,
) -> Instance {
    let pool = example_support::postgres::pool(url).unwrap();
    let mut inbox = Inbox::new(PostgresInbox::new(pool))
        .with_lease(Duration::from_millis(600))
        .with_poll_interval(Duration::from_millis(50))
        .with_backoff(Backoff::new(
            Duration::from_millis(50),
            2,
            Duration::from_millis(200),
            5,
        ));
    if let Some(dir) = spool {
        // Small, so that its bounds are reached: 16 deliveries, 2 per tenant.
        inbox = inbox.with_spool(Spool::with_limits(dir, 32, 1 << 20).unwrap());
    }
    let app = Router::new().route(
        "/webhooks",
        post_service(inbox.acknowledge()).layer(ContentstackWebhookLayer::new(
            kit.webhook_verifier(),
            kit.contentstack_keys(),
        )),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let seen = Arc::clone(seen);
    let workers = inbox.work(4, move |delivery: InboxDelivery| {
        let seen = Arc::clone(&seen);
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if delivery.body.windows(6).any(|w| w == b"poison") {
                return Err(BoxError::from("a body this handler cannot take"));
            }
            let mut seen = seen.lock().unwrap();
            // Every seventh delivery's first attempt fails, as a handler whose API is down.
            let flaky = u8::from_str_radix(&delivery.id[..2], 16)
                .unwrap()
                .is_multiple_of(7);
            if flaky && delivery.attempt == 1 {
                *seen.failed.entry(delivery.id).or_default() += 1;
                return Err(BoxError::from("the API is down"));
            }
            *seen.handled.entry(delivery.id).or_default() += 1;
            Ok(())
        }
    });
    Instance {
        base,
        inbox,
        workers: Some(workers),
    }
}

async fn send(base: &str, request: Request<Body>) -> (u16, serde_json::Value) {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let response = reqwest::Client::new()
        .post(format!("{base}{}", parts.uri))
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_shares_one_postgresql_inbox_and_handles_each_delivery_once() {
    const DELIVERIES: usize = 120;
    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let url = pg.url();
    let kit = TestKit::new().at(std::time::SystemTime::now());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut fleet = Vec::new();
    let spool = std::env::temp_dir().join(format!("countersign-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    for n in 0..3 {
        let spool = (n == 2).then_some(spool.as_path());
        fleet.push(instance(&url, &kit, &seen, spool).await);
    }
    let mut duplicates = 0;
    for n in 0..DELIVERIES {
        let body = WebhookBody::new("entry", "publish")
            .with_api_key(format!("blt-stack-{}", n % 5))
            .with_data(&json!({"entry": {"uid": format!("blt{n}")}}));
        let first = &fleet[n % 3];
        let request = kit.contentstack_webhook("/webhooks", &body);
        assert_eq!(send(&first.base, request).await.0, 200);
        // The provider's retry reaches another instance: acknowledged, not committed again.
        let again = &fleet[(n + 1) % 3];
        let (status, answer) =
            send(&again.base, kit.contentstack_webhook("/webhooks", &body)).await;
        assert_eq!(status, 200);
        if answer["status"] == "duplicate" {
            duplicates += 1;
        }
        if n == DELIVERIES / 2 {
            // One instance's workers die mid-run: what they held is taken over.
            fleet[0].workers.take();
        }
    }
    assert_eq!(duplicates, DELIVERIES, "every retry was a duplicate");
    for _ in 0..1_000 {
        let stats = fleet[1].inbox.stats().await.unwrap();
        if stats.pending + stats.leased == 0 && seen.lock().unwrap().handled.len() == DELIVERIES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.handled.len(), DELIVERIES, "none lost");
        assert!(
            seen.handled.values().all(|&times| times == 1),
            "each handled once: {:?}",
            seen.handled.values().filter(|&&t| t != 1).count()
        );
        assert!(!seen.failed.is_empty(), "some first attempts failed");
        assert!(
            seen.failed.keys().all(|id| seen.handled.contains_key(id)),
            "and were retried"
        );
        eprintln!(
            "fleet inbox: {DELIVERIES} deliveries, {duplicates} duplicates acknowledged, {} retried after a failure, each handled once",
            seen.failed.len()
        );
    }

    // A delivery its handler can never take: a dead letter after the last attempt, which only
    // its own tenant lists and retries.
    let poison = WebhookBody::new("entry", "publish")
        .with_api_key("blt-stack-3")
        .with_data(&json!({"entry": {"uid": "poison"}}));
    assert_eq!(
        send(
            &fleet[1].base,
            kit.contentstack_webhook("/webhooks", &poison)
        )
        .await
        .0,
        200
    );
    let mut dead = Vec::new();
    for _ in 0..500 {
        dead = fleet[2]
            .inbox
            .dead_letters("blt-stack-3", 10)
            .await
            .unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 5);
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("a body this handler cannot take")
    );
    assert_eq!(fleet[1].inbox.all_dead_letters(10).await.unwrap(), dead);
    assert!(
        fleet[1]
            .inbox
            .dead_letters("blt-stack-4", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        fleet[1]
            .inbox
            .retry("blt-stack-4", &dead[0].id)
            .await
            .unwrap(),
        countersign_inbox::Retried::NotFound
    );
    assert_eq!(
        fleet[1]
            .inbox
            .retry("blt-stack-3", &dead[0].id)
            .await
            .unwrap(),
        countersign_inbox::Retried::Due
    );
    assert_eq!(fleet[1].inbox.stats().await.unwrap().dead, 0, "due again");

    // The database goes down. Without a spool: 503 with Retry-After, so the provider retries.
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let during = |stack: &str, n: u32| {
        let body = WebhookBody::new("entry", "publish")
            .with_api_key(stack)
            .with_data(&json!({"entry": {"uid": format!("during-{n}")}}));
        kit.contentstack_webhook("/webhooks", &body)
    };
    let (status, problem) = send(&fleet[1].base, during("blt-stack-0", 0)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (503, Some("inbox_unavailable"))
    );
    // With one, accepted: each waits on disk, up to the tenant's share of the spool.
    // (An eighth of the 28 entries outside the reserve: 3.)
    for n in 1..=3 {
        assert_eq!(send(&fleet[2].base, during("blt-stack-0", n)).await.0, 200);
    }
    let (status, problem) = send(&fleet[2].base, during("blt-stack-0", 9)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (503, Some("inbox_unavailable")),
        "the tenant's share is used up"
    );
    assert_eq!(
        send(&fleet[2].base, during("blt-stack-1", 4)).await.0,
        200,
        "another tenant's is not"
    );

    // The instance restarts before the database is back: its spool is still there.
    drop(fleet.pop());
    fleet.push(instance(&url, &kit, &seen, Some(&spool)).await);
    let pg = tokio::task::spawn_blocking(move || {
        pg.resume();
        pg
    })
    .await
    .unwrap();
    for _ in 0..1_000 {
        if seen.lock().unwrap().handled.len() == DELIVERIES + 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.handled.len(),
            DELIVERIES + 4,
            "the spooled deliveries were handled"
        );
        assert!(seen.handled.values().all(|&times| times == 1));
    }
    let mut status = 0;
    for _ in 0..50 {
        status = send(&fleet[1].base, during("blt-stack-0", 0)).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200, "the inbox recovers by itself");
    drop(pg);
}

/// At a cold start, many commits at once: the table is made on a connection of its own, so
/// requests that hold every connection of the pool do not leave it none (they did: each took
/// one, then waited for the schema, which waited for a connection, until every request timed
/// out, again and again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_commits_at_a_cold_start_make_the_table_and_all_go_in() {
    use countersign_inbox::{Commit, Provider, WorkerStore};

    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    // A pool of 16 connections, and 40 commits before the table exists.
    let pool = example_support::postgres::pool(&pg.url()).unwrap();
    let store = PostgresInbox::new(pool)
        .with_table("cold_start_inbox")
        .unwrap();
    let expires = std::time::SystemTime::now() + Duration::from_secs(600);
    let commits: Vec<_> = (0..40)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let delivery = InboxDelivery {
                    id: format!("delivery-{n}"),
                    provider: Provider::Contentstack,
                    tenant: Some(format!("blt-stack-{}", n % 4)),
                    body: b"{}".to_vec().into(),
                    signed_headers: Vec::new(),
                    received_at: std::time::SystemTime::now(),
                    attempt: 0,
                };
                store.commit(&delivery, expires, Some(1_000)).await
            })
        })
        .collect();
    for commit in commits {
        assert_eq!(commit.await.unwrap().unwrap(), Commit::New);
    }
    assert_eq!(store.stats().await.unwrap().pending, 40);
}
