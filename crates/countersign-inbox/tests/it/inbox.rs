//! The durable inbox over SQLite, behind real verification layers on a real HTTP server:
//! acknowledged once committed, handled once, tried again, dead letters, leases taken over
//! from a dead worker, tenants kept apart, a restart survived.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::post_service;
use countersign::contentstack::WebhookBody;
use countersign::testing::TestKit;
use countersign::{ContentfulRequestLayer, ContentstackWebhookLayer};
use countersign_inbox::{Backoff, Inbox, InboxDelivery, Provider, Retried, SqliteInbox, rusqlite};
use http::Request;
use serde_json::{Value, json};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn sqlite(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("countersign-inbox-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("inbox.sqlite3")
}

/// A server whose webhook routes answer from `inbox`.
pub(crate) async fn serve(kit: &TestKit, inbox: &Inbox<SqliteInbox>) -> String {
    let app = Router::new()
        .route(
            "/webhooks/contentstack",
            post_service(inbox.acknowledge()).layer(ContentstackWebhookLayer::new(
                kit.webhook_verifier(),
                kit.contentstack_keys(),
            )),
        )
        .route(
            "/contentful/events",
            post_service(inbox.acknowledge())
                .layer(ContentfulRequestLayer::new(kit.contentful_verifier())),
        );
    format!("http://{}", crate::serve(app).await)
}

/// Sends a request the kit built to `base`: the status and the JSON answer.
pub(crate) async fn send(base: &str, request: Request<Body>) -> (u16, Value) {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let response = crate::client()
        .request(parts.method, format!("{base}{}", parts.uri))
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

pub(crate) fn publish(stack: &str, n: u32) -> WebhookBody {
    WebhookBody::new("entry", "publish")
        .with_api_key(stack)
        .with_data(&json!({"entry": {"uid": format!("blt{n}")}}))
}

/// Waits until `done` holds, for at most 10 s.
pub(crate) async fn until(done: impl Fn() -> bool) {
    for _ in 0..1_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 10 s");
}

/// The id and attempt of each delivery a handler saw.
type Seen = Arc<Mutex<Vec<(String, u32)>>>;

/// A handler that records each delivery's id and attempt, and succeeds.
pub(crate) fn recorder() -> (
    Seen,
    impl Fn(InboxDelivery) -> std::future::Ready<Result<(), BoxError>> + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    (seen, move |delivery: InboxDelivery| {
        record
            .lock()
            .unwrap()
            .push((delivery.id.clone(), delivery.attempt));
        std::future::ready(Ok(()))
    })
}

#[tokio::test]
async fn a_delivery_is_acknowledged_once_committed_and_handled_once() {
    // One time for every signing: a retry carries the same body (its `triggered_at` too).
    let kit = TestKit::new().at(std::time::SystemTime::now());
    let inbox = Inbox::new(SqliteInbox::open(sqlite("once")).unwrap());
    let base = serve(&kit, &inbox).await;
    let body = publish(TestKit::STACK, 1);
    let first = kit.contentstack_webhook("/webhooks/contentstack", &body);
    assert_eq!(
        send(&base, first).await,
        (200, json!({"status": "accepted"}))
    );
    // The same delivery again, signed afresh (a retry), and by HMAC: one delivery id.
    for again in [
        kit.contentstack_webhook("/webhooks/contentstack", &body),
        kit.contentstack_hmac_webhook("/webhooks/contentstack", &body),
    ] {
        assert_eq!(
            send(&base, again).await,
            (200, json!({"status": "duplicate"}))
        );
    }
    let forged = TestKit::new()
        .with_contentstack_key(countersign::contentstack::SigningKey::generate().unwrap());
    let (status, _) = send(
        &base,
        forged.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 2)),
    )
    .await;
    assert_eq!(status, 401, "nothing unverified is committed");
    assert_eq!(inbox.stats().await.unwrap().pending, 1);

    let (seen, handler) = recorder();
    let _workers = inbox.work(2, handler);
    until(|| seen.lock().unwrap().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "handled once: {seen:?}");
    assert_eq!(seen[0].1, 1, "the first attempt");
    let stats = inbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.leased, stats.dead), (0, 0, 0));
    assert_eq!(stats.oldest_unhandled, None);
    // Handled: a replay is still a duplicate, never handled again.
    let replay = kit.contentstack_webhook("/webhooks/contentstack", &body);
    assert_eq!(send(&base, replay).await.1, json!({"status": "duplicate"}));
}

#[tokio::test]
async fn a_slow_handler_holds_its_lease_and_never_delays_the_acknowledgement() {
    let kit = TestKit::new();
    let inbox = Inbox::new(SqliteInbox::open(sqlite("slow")).unwrap())
        .with_lease(Duration::from_millis(300));
    let base = serve(&kit, &inbox).await;
    let (calls, finished) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (counted, done) = (Arc::clone(&calls), Arc::clone(&finished));
    let _workers = inbox.work(2, move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        let done = Arc::clone(&done);
        async move {
            // Five leases long: renewed all along, so no other attempt starts.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            done.store(true, Ordering::SeqCst);
            Ok::<(), BoxError>(())
        }
    });
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1));
    assert_eq!(send(&base, request).await.0, 200);
    assert!(
        !finished.load(Ordering::SeqCst),
        "acknowledged before the handler finished"
    );
    until(|| finished.load(Ordering::SeqCst)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one attempt");
}

#[tokio::test]
async fn a_failing_handler_is_tried_again_then_is_a_dead_letter_its_tenant_can_retry() {
    let kit = TestKit::new();
    let inbox = Inbox::new(SqliteInbox::open(sqlite("dead")).unwrap()).with_backoff(Backoff::new(
        Duration::from_millis(20),
        2,
        Duration::from_millis(50),
        3,
    ));
    let base = serve(&kit, &inbox).await;
    let healthy = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let (is_healthy, record) = (Arc::clone(&healthy), Arc::clone(&attempts));
    let _workers = inbox.work(1, move |delivery: InboxDelivery| {
        record.lock().unwrap().push(delivery.attempt);
        let healthy = is_healthy.load(Ordering::SeqCst);
        async move {
            if delivery.attempt == 2 {
                panic!("a bug in the handler");
            }
            if healthy {
                Ok(())
            } else {
                Err(BoxError::from("the API it calls is down"))
            }
        }
    });
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1));
    assert_eq!(send(&base, request).await.0, 200);
    until(|| attempts.lock().unwrap().len() == 3).await;
    let stack = TestKit::STACK;
    for _ in 0..100 {
        if !inbox.dead_letters(stack, 10).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dead = inbox.dead_letters(stack, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].attempts,
            dead[0].provider,
            dead[0].tenant.as_deref()
        ),
        (3, Provider::Contentstack, Some(stack))
    );
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("the API it calls is down")
    );
    assert_eq!(
        *attempts.lock().unwrap(),
        [1, 2, 3],
        "a panic is a failed attempt"
    );
    assert_eq!(inbox.stats().await.unwrap().dead, 1);

    // Another tenant sees none of it and cannot retry it.
    assert!(
        inbox
            .dead_letters("blt-another", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        inbox.retry("blt-another", &dead[0].id).await.unwrap(),
        Retried::NotFound
    );
    assert_eq!(
        inbox.all_dead_letters(10).await.unwrap(),
        dead,
        "the operator's view"
    );
    healthy.store(true, Ordering::SeqCst);
    assert_eq!(inbox.retry(stack, &dead[0].id).await.unwrap(), Retried::Due);
    until(|| attempts.lock().unwrap().len() == 4).await;
    assert_eq!(attempts.lock().unwrap()[3], 1, "attempts counted afresh");
    for _ in 0..100 {
        if inbox.stats().await.unwrap().dead == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(inbox.stats().await.unwrap().dead, 0);
}

#[tokio::test]
async fn a_dead_workers_delivery_is_taken_over_when_its_lease_lapses() {
    let kit = TestKit::new();
    let inbox = Inbox::new(SqliteInbox::open(sqlite("takeover")).unwrap())
        .with_lease(Duration::from_millis(300))
        .with_poll_interval(Duration::from_millis(20));
    let base = serve(&kit, &inbox).await;
    let started = Arc::new(AtomicBool::new(false));
    let mark = Arc::clone(&started);
    let stuck = inbox.work(1, move |_| {
        mark.store(true, Ordering::SeqCst);
        std::future::pending::<Result<(), BoxError>>()
    });
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1));
    assert_eq!(send(&base, request).await.0, 200);
    until(|| started.load(Ordering::SeqCst)).await;
    assert_eq!(inbox.stats().await.unwrap().leased, 1);
    // The worker dies holding it (as a killed process would: nobody renews its lease).
    drop(stuck);
    let (seen, handler) = recorder();
    let _rescuer = inbox.work(1, handler);
    until(|| seen.lock().unwrap().len() == 1).await;
    assert_eq!(
        seen.lock().unwrap()[0].1,
        2,
        "the second attempt, by another worker"
    );
}

#[tokio::test]
async fn a_contentful_events_signed_facts_and_a_restart_are_kept() {
    let kit = TestKit::new();
    let path = sqlite("restart");
    let inbox = Inbox::new(SqliteInbox::open(&path).unwrap());
    let base = serve(&kit, &inbox).await;
    let event = kit.contentful_app_event(
        "/contentful/events",
        "ContentManagement.Entry.publish",
        r#"{"sys":{"id":"e1"}}"#,
        "key-1",
    );
    assert_eq!(send(&base, event).await.0, 200);
    drop(inbox);

    // The process restarts: the delivery is still there, with its facts.
    let inbox = Inbox::new(SqliteInbox::open(&path).unwrap());
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    let _workers = inbox.work(1, move |delivery: InboxDelivery| {
        *record.lock().unwrap() = Some(delivery);
        std::future::ready(Ok::<(), BoxError>(()))
    });
    until(|| seen.lock().unwrap().is_some()).await;
    let delivery = seen.lock().unwrap().clone().unwrap();
    assert_eq!(delivery.provider, Provider::Contentful);
    assert_eq!(
        delivery.signed_header("x-contentful-topic"),
        Some("ContentManagement.Entry.publish")
    );
    assert_eq!(delivery.tenant.as_deref(), Some(TestKit::SPACE));
    assert_eq!(delivery.json::<Value>().unwrap()["sys"]["id"], "e1");
    assert!(
        delivery.signed_header("x-contentful-signature").is_none(),
        "no credential is kept"
    );
    assert!(
        !format!("{delivery:?}").contains("e1"),
        "Debug shows no body"
    );
}

#[tokio::test]
async fn an_attempt_past_its_timeout_fails_and_a_worker_dead_on_the_last_attempt_leaves_a_dead_letter()
 {
    let kit = TestKit::new();
    let inbox = Inbox::new(SqliteInbox::open(sqlite("timeout")).unwrap())
        .with_attempt_timeout(Duration::from_millis(100))
        .with_lease(Duration::from_millis(300))
        .with_poll_interval(Duration::from_millis(20))
        .with_backoff(Backoff::new(
            Duration::from_millis(10),
            1,
            Duration::from_millis(10),
            2,
        ));
    let base = serve(&kit, &inbox).await;
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1));
    assert_eq!(send(&base, request).await.0, 200);
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    let stuck = inbox.work(1, move |_| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n == 1 {
                // Past the attempt timeout: a failed attempt, tried again.
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            // The second, last attempt: its worker dies while it runs.
            std::future::pending::<Result<(), BoxError>>().await
        }
    });
    until(|| attempts.load(Ordering::SeqCst) == 2).await;
    drop(stuck);
    let (seen, handler) = recorder();
    let _rescuer = inbox.work(1, handler);
    let mut dead = Vec::new();
    for _ in 0..200 {
        dead = inbox.dead_letters(TestKit::STACK, 10).await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dead.len(), 1, "buried after its last attempt's worker died");
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("lease lapsed")
    );
    assert!(seen.lock().unwrap().is_empty(), "not taken a third time");
}

/// How many rows `table` has in the SQLite database `connection` opened.
fn rows(connection: &Mutex<rusqlite::Connection>, table: &str) -> i64 {
    connection
        .lock()
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
}

#[tokio::test]
async fn a_handler_in_the_inbox_transaction_commits_its_writes_once_and_a_failure_writes_nothing() {
    let kit = TestKit::new();
    let path = sqlite("transaction");
    let connection = Arc::new(Mutex::new(rusqlite::Connection::open(&path).unwrap()));
    connection
        .lock()
        .unwrap()
        .execute_batch("CREATE TABLE events (delivery TEXT NOT NULL, attempt INTEGER NOT NULL)")
        .unwrap();
    let inbox = Inbox::new(SqliteInbox::sharing(Arc::clone(&connection)).unwrap())
        .with_poll_interval(Duration::from_millis(20))
        .with_backoff(Backoff::new(
            Duration::from_millis(10),
            1,
            Duration::from_millis(10),
            3,
        ));
    let base = serve(&kit, &inbox).await;
    for n in 1..=2 {
        let request =
            kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, n));
        assert_eq!(send(&base, request).await.0, 200);
    }
    // Delivery 1 writes, then fails on its first attempt: that write is rolled back. No
    // `UNIQUE` on `delivery`: only the transaction keeps a second row out.
    let first = inbox.stats().await.unwrap();
    assert_eq!(first.pending, 2);
    let _workers = inbox.work_in_transaction(2, |db, delivery: &InboxDelivery| {
        db.execute(
            "INSERT INTO events (delivery, attempt) VALUES (?1, ?2)",
            rusqlite::params![delivery.id, delivery.attempt],
        )?;
        if delivery.json::<Value>()?["data"]["entry"]["uid"] == "blt1" && delivery.attempt == 1 {
            return Err("the first attempt fails after its write".into());
        }
        Ok(())
    });
    for _ in 0..500 {
        if inbox.stats().await.unwrap().pending + inbox.stats().await.unwrap().leased == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rows(&connection, "events"), 2, "one row per delivery");
    let attempts: Vec<i64> = {
        let db = connection.lock().unwrap();
        let mut rows = db
            .prepare("SELECT attempt FROM events ORDER BY attempt")
            .unwrap();
        rows.query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        attempts,
        [1, 2],
        "the failed attempt's write is gone, the retry's kept"
    );
    assert_eq!(
        rows(&connection, "countersign_inbox WHERE state = 'done'"),
        2
    );
}

#[tokio::test]
async fn a_handler_that_gives_up_makes_a_dead_letter_at_once() {
    let kit = TestKit::new();
    let inbox = Inbox::new(SqliteInbox::open(sqlite("give-up")).unwrap())
        .with_poll_interval(Duration::from_millis(20));
    let base = serve(&kit, &inbox).await;
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1));
    assert_eq!(send(&base, request).await.0, 200);
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    let _workers = inbox.work(1, move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err::<(), BoxError>(
            countersign_inbox::GiveUp::new("not an event this app knows").into(),
        ))
    });
    let mut dead = Vec::new();
    for _ in 0..500 {
        dead = inbox.dead_letters(TestKit::STACK, 10).await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1, "no second attempt");
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("not an event this app knows")
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_shutdown_lets_the_attempt_under_way_finish_and_takes_no_other() {
    let kit = TestKit::new();
    let inbox = Inbox::new(SqliteInbox::open(sqlite("shutdown")).unwrap())
        .with_poll_interval(Duration::from_millis(20));
    let base = serve(&kit, &inbox).await;
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1));
    assert_eq!(send(&base, request).await.0, 200);
    let started = Arc::new(AtomicBool::new(false));
    let (mark, done) = (Arc::clone(&started), Arc::new(AtomicUsize::new(0)));
    let finished = Arc::clone(&done);
    let workers = inbox.work(1, move |_| {
        mark.store(true, Ordering::SeqCst);
        let finished = Arc::clone(&finished);
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            finished.fetch_add(1, Ordering::SeqCst);
            Ok::<(), BoxError>(())
        }
    });
    until(|| started.load(Ordering::SeqCst)).await;
    workers.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        done.load(Ordering::SeqCst),
        1,
        "the attempt under way finished"
    );
    let stats = inbox.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.leased),
        (0, 0),
        "and was recorded as handled"
    );
    // Stopped workers take nothing more.
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 2));
    assert_eq!(send(&base, request).await.0, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(inbox.stats().await.unwrap().pending, 1);
}
