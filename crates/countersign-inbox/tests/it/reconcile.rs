//! Reconciling the inbox with the providers' records: the deliveries lost while every instance
//! was down are committed from the record and handled once; the ones that arrived are found
//! present; a second run commits nothing; a retry that arrives after reconciliation is a
//! duplicate; an attempt older than the inbox remembers is never committed.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use countersign::testing::TestKit;
use countersign_core::reconcile::contentful::call_details;
use countersign_core::reconcile::contentstack::ExecutionsPage;
use countersign_inbox::{Found, Inbox, OperatorStore, SqliteInbox, WorkerStore};
use http::Request;
use serde_json::json;

use crate::inbox::{publish, recorder, send, serve, sqlite, until};

async fn body_of(request: Request<Body>) -> (Request<Body>, Vec<u8>) {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (
        Request::from_parts(parts, Body::from(bytes.clone())),
        bytes.to_vec(),
    )
}

fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Contentstack's executions page for deliveries with these bodies, made at `at`.
fn executions(bodies: &[Vec<u8>], at: SystemTime) -> Vec<u8> {
    let executions: Vec<String> = bodies
        .iter()
        .enumerate()
        .map(|(n, body)| {
            format!(
                r#"{{"uid":"ex{n}","created_at":"{}","status":500,"retry_count":4,"request_details":[{{"request":{{"body":{}}}}}]}}"#,
                rfc3339(at),
                std::str::from_utf8(body).unwrap()
            )
        })
        .collect();
    format!(r#"{{"webhooks":[{}]}}"#, executions.join(",")).into_bytes()
}

#[tokio::test]
async fn contentstack_deliveries_lost_in_an_outage_are_committed_from_the_record_and_handled_once()
{
    let kit = TestKit::new().at(SystemTime::now());
    let inbox = Inbox::new(SqliteInbox::open(sqlite("reconcile-cs")).unwrap());
    let base = serve(&kit, &inbox).await;
    let mut requests = Vec::new();
    let mut bodies = Vec::new();
    for n in 0..3 {
        let (request, body) = body_of(
            kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, n)),
        )
        .await;
        requests.push(request);
        bodies.push(body);
    }
    // The first arrives; the other two are lost (every instance down past the retries).
    let mut requests = requests.into_iter();
    assert_eq!(send(&base, requests.next().unwrap()).await.0, 200);
    let lost = requests.next().unwrap();

    let page = ExecutionsPage::parse(
        &executions(&bodies, SystemTime::now()),
        TestKit::STACK,
        None,
    )
    .unwrap();
    assert_eq!(
        inbox.reconcile(&page.attempts, false).await.unwrap(),
        [Found::Present, Found::Missing, Found::Missing],
        "a dry run writes nothing"
    );
    assert_eq!(inbox.stats().await.unwrap().pending, 1);

    let (seen, handler) = recorder();
    let _workers = inbox.work(2, handler);
    assert_eq!(
        inbox.reconcile(&page.attempts, true).await.unwrap(),
        [Found::Present, Found::Committed, Found::Committed]
    );
    until(|| seen.lock().unwrap().len() >= 3).await;
    // The provider's own retry of a reconciled delivery arrives: a duplicate.
    assert_eq!(send(&base, lost).await.1, json!({"status": "duplicate"}));
    assert_eq!(
        inbox.reconcile(&page.attempts, true).await.unwrap(),
        [Found::Present, Found::Present, Found::Present],
        "a second run commits nothing"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(ids.len(), 3, "three handlings: {ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each delivery once");
    let expected: Vec<String> = page
        .attempts
        .iter()
        .map(|a| a.delivery.as_ref().unwrap().id())
        .collect();
    for id in &expected {
        assert!(ids.contains(id), "the record's ids are the live path's");
    }
}

#[tokio::test]
async fn an_attempt_older_than_the_inbox_remembers_is_never_committed() {
    let kit = TestKit::new().at(SystemTime::now());
    let inbox = Inbox::new(SqliteInbox::open(sqlite("reconcile-old")).unwrap())
        .with_retry_horizon(Duration::from_secs(3600));
    let (_, body) =
        body_of(kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1)))
            .await;
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    let page = ExecutionsPage::parse(
        &executions(std::slice::from_ref(&body), two_hours_ago),
        TestKit::STACK,
        None,
    )
    .unwrap();
    assert_eq!(
        inbox.reconcile(&page.attempts, true).await.unwrap(),
        [Found::Forgotten]
    );
    assert_eq!(inbox.stats().await.unwrap().pending, 0);
    // Within the horizon it is committed.
    let page = ExecutionsPage::parse(
        &executions(&[body], SystemTime::now()),
        TestKit::STACK,
        None,
    )
    .unwrap();
    assert_eq!(
        inbox.reconcile(&page.attempts, true).await.unwrap(),
        [Found::Committed]
    );
}

/// Contentful's details of a call that carried the request of `parts` and `body`.
fn call(id: &str, parts: &http::request::Parts, body: &[u8]) -> Vec<u8> {
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), json!(v.to_str().unwrap())))
        .collect();
    serde_json::to_vec(&json!({
        "sys": {"id": id, "type": "WebhookCallDetails"},
        "request": {"url": format!("https://app.example{}", parts.uri), "method": "POST",
                    "headers": headers, "body": std::str::from_utf8(body).unwrap()},
        "statusCode": 0, "errors": ["Timeout"], "requestAt": rfc3339(SystemTime::now()),
    }))
    .unwrap()
}

/// The request again, from its parts and body.
fn again(parts: &http::request::Parts, body: &[u8]) -> Request<Body> {
    let mut request = Request::post(parts.uri.clone())
        .body(Body::from(body.to_vec()))
        .unwrap();
    *request.headers_mut() = parts.headers.clone();
    request
}

#[tokio::test]
async fn contentful_calls_lost_in_an_outage_are_committed_from_the_record_and_handled_once() {
    let kit = TestKit::new().at(SystemTime::now());
    let inbox = Inbox::new(SqliteInbox::open(sqlite("reconcile-cf")).unwrap());
    let base = serve(&kit, &inbox).await;
    let topic = "ContentManagement.Entry.publish";
    let mut records = Vec::new();
    let mut sent = Vec::new();
    for (n, body) in [r#"{"n":1}"#, r#"{"n":2}"#].into_iter().enumerate() {
        let (request, body) =
            body_of(kit.contentful_webhook("/contentful/events", topic, body)).await;
        let (parts, _) = request.into_parts();
        records.push(call(&format!("c{n}"), &parts, &body));
        sent.push((parts, body));
    }
    // The first arrives; the second is lost.
    assert_eq!(send(&base, again(&sent[0].0, &sent[0].1)).await.0, 200);

    let attempts: Vec<_> = records
        .iter()
        .map(|details| call_details(details, TestKit::SPACE, None).unwrap())
        .collect();
    let (seen, handler) = recorder();
    let _workers = inbox.work(1, handler);
    assert_eq!(
        inbox.reconcile(&attempts, false).await.unwrap(),
        [Found::Present, Found::Missing]
    );
    assert_eq!(
        inbox.reconcile(&attempts, true).await.unwrap(),
        [Found::Present, Found::Committed]
    );
    until(|| seen.lock().unwrap().len() >= 2).await;
    // Contentful's own retry of the lost call, with its idempotency key.
    assert_eq!(
        send(&base, again(&sent[1].0, &sent[1].1)).await.1,
        json!({"status": "duplicate"})
    );
    assert_eq!(
        inbox.reconcile(&attempts, true).await.unwrap(),
        [Found::Present, Found::Present]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.lock().unwrap().len(), 2, "each handled once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconciled_delivery_and_the_providers_own_retry_at_the_same_time_are_handled_once() {
    const LOST: u32 = 20;
    let kit = TestKit::new().at(SystemTime::now());
    let inbox = Inbox::new(SqliteInbox::open(sqlite("reconcile-race")).unwrap());
    let base = serve(&kit, &inbox).await;
    let mut retries = Vec::new();
    let mut bodies = Vec::new();
    for n in 0..LOST {
        let (request, body) = body_of(
            kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, n)),
        )
        .await;
        retries.push(request);
        bodies.push(body);
    }
    let page = ExecutionsPage::parse(
        &executions(&bodies, SystemTime::now()),
        TestKit::STACK,
        None,
    )
    .unwrap();
    let (seen, handler) = recorder();
    let _workers = inbox.work(4, handler);
    // Each lost delivery reconciled while Contentstack's own retry of it arrives.
    let mut races = Vec::new();
    for (attempt, retry) in page.attempts.into_iter().zip(retries) {
        let (inbox, base) = (inbox.clone(), base.clone());
        races.push(tokio::spawn(async move {
            let (found, (status, answer)) = tokio::join!(
                inbox.reconcile(std::slice::from_ref(&attempt), true),
                send(&base, retry)
            );
            assert_eq!(status, 200);
            (
                found.unwrap()[0].clone(),
                answer["status"].as_str().unwrap().to_owned(),
            )
        }));
    }
    let mut committed = 0;
    for race in races {
        let (found, answered) = race.await.unwrap();
        // Exactly one of the two put it in the inbox.
        match (found, answered.as_str()) {
            (Found::Committed, "duplicate") | (Found::Present, "accepted") => committed += 1,
            other => panic!("both or neither committed it: {other:?}"),
        }
    }
    assert_eq!(committed, LOST);
    until(|| seen.lock().unwrap().len() >= LOST as usize).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(ids.len(), LOST as usize, "{ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), LOST as usize, "each handled once");
}

#[tokio::test]
async fn a_horizon_raised_after_deliveries_were_forgotten_does_not_reach_back_past_them() {
    let kit = TestKit::new().at(SystemTime::now());
    let store = SqliteInbox::open(sqlite("reconcile-raised")).unwrap();
    let inbox = Inbox::new(store.clone()).with_retry_horizon(Duration::from_secs(3600));
    let (_, body) =
        body_of(kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1)))
            .await;
    let page = ExecutionsPage::parse(
        &executions(std::slice::from_ref(&body), SystemTime::now()),
        TestKit::STACK,
        None,
    )
    .unwrap();
    let (seen, handler) = recorder();
    let workers = inbox.work(1, handler);
    assert_eq!(
        inbox.reconcile(&page.attempts, true).await.unwrap(),
        [Found::Committed]
    );
    until(|| seen.lock().unwrap().len() == 1).await;
    // The handler ran; its outcome is written just after: handled once the inbox says so.
    for _ in 0..500 {
        let stats = inbox.stats().await.unwrap();
        if stats.pending + stats.leased == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(workers);
    // Handled, then forgotten once its hour is up.
    assert_eq!(
        store
            .purge(SystemTime::now() + Duration::from_secs(7200))
            .await
            .unwrap(),
        1
    );
    assert!(store.purged_up_to().await.unwrap().is_some());
    // An inbox that now remembers 30 days does not take the record's word for that hour.
    let longer = Inbox::new(store).with_retry_horizon(Duration::from_secs(30 * 86_400));
    assert_eq!(
        longer.reconcile(&page.attempts, true).await.unwrap(),
        [Found::Forgotten],
        "handled and forgotten: never committed again"
    );
}
