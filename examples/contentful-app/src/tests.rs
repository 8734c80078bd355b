//! The app's own tests: the test kit's signed requests through the app's router.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use countersign::replay::MemoryStore;
use countersign::testing::TestKit;
use tower::ServiceExt as _;

use axum::Router;
use serde_json::{Value, json};

use super::*;
use crate::records::Received;

/// The app's router over `records`, its inbox (SQLite in a directory named for `name`) and
/// the inbox's workers.
struct App {
    router: Router,
    inbox: example_support::inbox::AnyInbox,
    _workers: countersign_inbox::Workers,
}

fn app(kit: &TestKit, records: &Records, name: &str) -> App {
    let dir = std::env::temp_dir().join(format!("contentful-app-{name}-{}", std::process::id()));
    let inbox = records.inbox(&dir).unwrap();
    App {
        router: routes(
            kit.contentful_verifier(),
            MemoryStore::new(1_000),
            records.clone(),
            inbox.clone(),
        ),
        _workers: records.work(&inbox),
        inbox,
    }
}

/// A fresh app over `records` in a fresh directory.
fn fresh_app(kit: &TestKit, records: &Records, name: &str) -> App {
    let dir = std::env::temp_dir().join(format!("contentful-app-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    app(kit, records, name)
}

/// Sends `request`; a webhook or event is also recorded by the inbox's workers before this
/// returns.
async fn send(app: &App, request: Request<Body>) -> (StatusCode, Value) {
    let event = request.uri().path().starts_with("/contentful/webhooks")
        || request.uri().path().starts_with("/contentful/app-events");
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    if event {
        for _ in 0..1_000 {
            let stats = app.inbox.stats().await.unwrap();
            if stats.pending + stats.leased == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn webhooks_and_app_events_are_handled_by_topic_once() {
    let kit = TestKit::new();
    let router = fresh_app(&kit, &Records::memory(), "topics");
    let mut expected = Vec::new();
    for (topic, handling) in [
        ("ContentManagement.Entry.publish", "content_changed"),
        ("ContentManagement.Asset.unpublish", "content_changed"),
        ("ContentManagement.Entry.delete", "content_deleted"),
        ("ContentManagement.AppInstallation.delete", "uninstalled"),
        (
            "ContentManagement.AppInstallation.update",
            "installation_changed",
        ),
        ("ContentManagement.Task.create", "ignored"),
        ("ContentManagement.Hologram.levitate", "ignored"),
    ] {
        let (status, body) = send(
            &router,
            kit.contentful_webhook("/contentful/webhooks", topic, "{}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{topic}: {body}");
        assert_eq!(body, json!({"status": "accepted"}));
        expected.push(json!({"topic": topic, "handling": handling}));
    }
    let (status, page) = send(
        &router,
        kit.contentful_frontend_request(axum::http::Method::GET, "/api/deliveries", "user-1", ""),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let handled: Vec<Value> = page["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| json!({"topic": d["topic"], "handling": d["handling"]}))
        .collect();
    assert_eq!(handled, expected, "each recorded once, by its signed topic");
    let event = || {
        kit.contentful_app_event(
            "/contentful/app-events",
            "ContentManagement.Entry.save",
            "{}",
            "event-1",
        )
    };
    assert_eq!(send(&router, event()).await.1["status"], "accepted");
    assert_eq!(send(&router, event()).await.1["status"], "duplicate");
}

#[tokio::test]
async fn each_delivery_is_recorded_once_and_read_back_by_its_space_environment() {
    let kit = TestKit::new();
    // No replay store between the two copies of one event: the inbox alone keeps it once
    // (a second instance on the same inbox, or a flushed Redis).
    let records = Records::memory();
    let _ = fresh_app(&kit, &records, "once");
    let fresh = || app(&kit, &records, "once");
    for n in 0..3 {
        let event = kit.contentful_app_event(
            "/contentful/app-events",
            "ContentManagement.Entry.publish",
            format!(r#"{{"n":{n}}}"#),
            &format!("event-{n}"),
        );
        assert_eq!(send(&fresh(), event).await.0, StatusCode::OK);
    }
    let again = kit.contentful_app_event(
        "/contentful/app-events",
        "ContentManagement.Entry.publish",
        r#"{"n":0}"#,
        "event-0",
    );
    assert_eq!(send(&fresh(), again).await.1["status"], "duplicate");

    let read =
        |uri: &str| kit.contentful_frontend_request(axum::http::Method::GET, uri, "user-1", "");
    let (status, page) = send(&fresh(), read("/api/deliveries?limit=2")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let bodies: Vec<&str> = page["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, [r#"{"n":0}"#, r#"{"n":1}"#]);
    assert_eq!(page["deliveries"][0]["handling"], "content_changed");
    let next = page["next_after"].as_i64().unwrap();
    let (_, rest) = send(&fresh(), read(&format!("/api/deliveries?after={next}"))).await;
    assert_eq!(rest["deliveries"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["deliveries"][0]["body"], r#"{"n":2}"#);
    assert_eq!(rest["next_after"], Value::Null);

    // A signature without a user (an app event's, not a frontend's) does not read the
    // records; nor does a bad page.
    let to_sign =
        countersign::contentful::RequestToSign::new(axum::http::Method::GET, "/api/deliveries");
    let context = countersign::contentful::Context {
        space_id: Some(TestKit::SPACE.into()),
        environment_id: Some(TestKit::ENVIRONMENT.into()),
        ..Default::default()
    };
    let signed = countersign::contentful::sign(
        &kit.contentful_secret(),
        &to_sign,
        std::time::SystemTime::now(),
        &context,
    )
    .unwrap();
    let mut no_user = Request::get("/api/deliveries");
    for (name, value) in signed.iter() {
        no_user = no_user.header(name, value);
    }
    let (status, body) = send(&fresh(), no_user.body(Body::empty()).unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("request_kind_not_allowed"))
    );
    let (status, body) = send(&fresh(), read("/api/deliveries?limit=0")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_page"))
    );
}

#[tokio::test]
async fn the_records_in_memory_keep_the_latest_ones() {
    let records = Records::memory();
    let received = |n: usize| Received {
        id: format!("delivery-{n}"),
        space_id: "space".into(),
        environment_id: "master".into(),
        topic: None,
        handling: "untyped",
        body: n.to_string(),
    };
    for n in 0..=records::MEMORY_CAPACITY {
        assert!(records.record(received(n)).await.unwrap());
    }
    assert!(
        !records
            .record(received(records::MEMORY_CAPACITY))
            .await
            .unwrap()
    );
    let all = records
        .list("space".into(), "master".into(), 0, 500)
        .await
        .unwrap();
    assert_eq!(all[0]["body"], "1", "the oldest went first");
    assert_eq!(all[0]["seq"], 2);
}

#[tokio::test]
async fn actions_need_a_signed_user() {
    let kit = TestKit::new();
    let router = fresh_app(&kit, &Records::memory(), "actions");
    let (status, body) = send(
        &router,
        kit.contentful_action("/contentful/actions/sync", "user-1", "{}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "user-1");
    assert_eq!(body["action"], "sync");
    // A signed request without a user (a webhook's signature) is not an action.
    let (status, body) = send(
        &router,
        kit.contentful_webhook(
            "/contentful/actions/sync",
            "ContentManagement.Entry.save",
            "{}",
        ),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("request_kind_not_allowed"))
    );
    let forged = TestKit::new().with_contentful_secret(SigningSecret::generate().unwrap());
    let (status, _) = send(
        &router,
        forged.contentful_action("/contentful/actions/sync", "user-1", "{}"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn event_routes_refuse_what_a_user_had_signed_and_webhook_secrets_their_other_spaces() {
    let kit = TestKit::new();
    let router = fresh_app(&kit, &Records::memory(), "kinds");
    // A user of an installation has the app frontend sign an uninstall event.
    let uninstall = r#"{"sys":{"type":"AppInstallation"}}"#;
    for route in ["/contentful/app-events", "/contentful/webhooks"] {
        let mut forged = kit.contentful_action(route, "user-1", uninstall);
        forged.headers_mut().insert(
            "x-contentful-topic",
            "ContentManagement.AppInstallation.delete".parse().unwrap(),
        );
        let (status, body) = send(&router, forged).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("request_kind_not_allowed")),
            "{route}"
        );
    }
    // The space's webhook secret signs its own space's webhooks only.
    let (status, _) = send(
        &router,
        kit.contentful_webhook("/contentful/webhooks", "ContentManagement.Entry.save", "{}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let secret = kit.contentful_webhook_secret();
    let to_sign = countersign::contentful::RequestToSign::new(
        axum::http::Method::POST,
        "/contentful/webhooks",
    )
    .with_body(b"{}");
    let context = countersign::contentful::Context {
        space_id: Some("another-space".into()),
        ..Default::default()
    };
    let signed =
        countersign::contentful::sign(&secret, &to_sign, std::time::SystemTime::now(), &context)
            .unwrap();
    let mut other_space = Request::post("/contentful/webhooks");
    for (name, value) in signed.iter() {
        other_space = other_space.header(name, value);
    }
    let (status, body) = send(&router, other_space.body(Body::from("{}")).unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("signature_mismatch"))
    );
}
