//! The app's own tests: the test kit's signed requests through the app's router.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use axum::body::{Body, to_bytes};
use countersign::contentstack::WebhookBody;
use countersign::replay::MemoryStore;
use countersign::testing::TestKit;
use http::{Request, StatusCode};
use tower::ServiceExt as _;

use axum::Router;
use serde_json::{Value, json};

use super::*;
use crate::deliveries::Deliveries;

/// The app's router, its inbox and the inbox's workers.
struct App {
    router: Router,
    deliveries: Deliveries,
    _workers: countersign_inbox::Workers,
}

fn router(kit: &TestKit, name: &str) -> App {
    router_and_store(kit, name).0
}

fn router_and_store(kit: &TestKit, name: &str) -> (App, Store) {
    let dir = std::env::temp_dir().join(format!("marketplace-app-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = Config::for_tests(dir.clone(), kit);
    let store = Store::open(&dir).unwrap();
    let keys = BoxKeySource::new(kit.contentstack_keys());
    let replay = || BoxReplayStore::new(MemoryStore::new(1_000));
    let deliveries = store.inbox(&dir).unwrap();
    let workers = deliveries::work(&deliveries, &store);
    let webhooks = webhooks::route(&config, keys.clone(), store.clone(), deliveries.clone());
    let router = api::router(
        &config,
        keys,
        webhooks,
        store.clone(),
        replay(),
        oauth::AsTheApp::new(None, &store, None).unwrap(),
        deliveries.clone(),
    );
    (
        App {
            router,
            deliveries,
            _workers: workers,
        },
        store,
    )
}

/// Sends `request`; a webhook is also handled by the inbox's workers before this returns.
async fn send(app: &App, request: Request<Body>) -> (StatusCode, String) {
    let webhook = request.uri().path().starts_with("/webhooks/");
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    if webhook {
        handled(&app.deliveries).await;
    }
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Waits until the inbox has nothing left to handle (at most 10 s).
async fn handled(deliveries: &Deliveries) {
    for _ in 0..1_000 {
        let stats = deliveries.stats().await.unwrap();
        if stats.pending + stats.leased == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the inbox did not empty within 10 s");
}

/// The session a UI location's page embeds.
fn session_in(page: &str) -> String {
    page.split(r#"<meta name="app-session" content=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned()
}

fn installation(event: &str) -> WebhookBody {
    WebhookBody::new("app_installation", event)
        .with_api_key(TestKit::STACK)
        .with_data(&json!({"app_installation": {
            "app_uid": TestKit::APP_UID,
            "installation_uid": TestKit::INSTALLATION,
            "target": {"type": "stack", "uid": TestKit::STACK},
        }}))
}

fn publish() -> WebhookBody {
    WebhookBody::new("entry", "publish")
        .with_api_key(TestKit::STACK)
        .with_data(&json!({"entry": {"uid": "blt1"}}))
}

#[tokio::test]
async fn webhooks_of_an_installed_stack_are_recorded_and_shown_in_its_session() {
    let kit = TestKit::new();
    let router = router(&kit, "lifecycle");
    let path = "/webhooks/contentstack";

    let (status, body) = send(&router, kit.contentstack_webhook(path, &publish())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not installed yet: {body}");

    let (status, _) = send(
        &router,
        kit.contentstack_webhook(path, &installation("install")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(&router, kit.contentstack_hmac_webhook(path, &publish())).await;
    assert_eq!(status, StatusCode::OK);

    let (status, page) = send(&router, kit.app_token_page_load("/ui/sidebar", &json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    let token = session_in(&page);
    let events = Request::get("/api/events")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, events) = send(&router, events).await;
    assert_eq!(status, StatusCode::OK);
    let events: Value = serde_json::from_str(&events).unwrap();
    assert_eq!(events["events"][0]["event"], "publish");
    assert_eq!(events["events"][0]["module"], "entry");

    let (status, _) = send(
        &router,
        kit.contentstack_webhook(path, &installation("uninstall")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(&router, kit.contentstack_webhook(path, &publish())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "uninstalled");
}

#[tokio::test]
async fn events_are_read_a_page_at_a_time_with_their_data() {
    let kit = TestKit::new();
    let router = router(&kit, "pages");
    let path = "/webhooks/contentstack";
    send(
        &router,
        kit.contentstack_webhook(path, &installation("install")),
    )
    .await;
    for n in 0..3 {
        let event = WebhookBody::new("entry", "publish")
            .with_api_key(TestKit::STACK)
            .with_data(&json!({"entry": {"uid": format!("blt{n}")}}));
        let (status, _) = send(&router, kit.contentstack_hmac_webhook(path, &event)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, page) = send(&router, kit.app_token_page_load("/ui/sidebar", &json!({}))).await;
    let token = session_in(&page);
    let get = |uri: String| {
        Request::get(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, first) = send(&router, get("/api/events?limit=2".into())).await;
    assert_eq!(status, StatusCode::OK);
    let first: Value = serde_json::from_str(&first).unwrap();
    let uids = |page: &Value| -> Vec<String> {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["data"]["entry"]["uid"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(uids(&first), ["blt2", "blt1"], "newest first");
    let before = first["next_before"].as_i64().unwrap();
    let (_, rest) = send(&router, get(format!("/api/events?limit=2&before={before}"))).await;
    let rest: Value = serde_json::from_str(&rest).unwrap();
    assert_eq!(uids(&rest), ["blt0"]);
    assert_eq!(rest["next_before"], Value::Null, "the last page");
    for bad in [
        "/api/events?limit=0",
        "/api/events?limit=501",
        "/api/events?before=x",
    ] {
        let (status, body) = send(&router, get(bad.into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains("invalid_page"), "{body}");
    }
}

#[tokio::test]
async fn an_unknown_installation_event_is_logged_and_changes_nothing() {
    let kit = TestKit::new();
    let router = router(&kit, "unknown-event");
    let path = "/webhooks/contentstack";
    send(
        &router,
        kit.contentstack_webhook(path, &installation("install")),
    )
    .await;
    let (status, _) = send(
        &router,
        kit.contentstack_webhook(path, &installation("suspend")),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an unknown event never fails a delivery"
    );
    let (status, _) = send(&router, kit.contentstack_webhook(path, &publish())).await;
    assert_eq!(status, StatusCode::OK, "still installed");
}

#[tokio::test]
async fn forged_and_stale_webhooks_and_other_apps_tokens_are_refused() {
    let kit = TestKit::new();
    let router = router(&kit, "refused");
    let forger = TestKit::new()
        .with_contentstack_key(countersign::contentstack::SigningKey::generate().unwrap());
    let stale =
        TestKit::new().at(std::time::SystemTime::now() - std::time::Duration::from_secs(7_200));
    for request in [
        forger.contentstack_webhook("/webhooks/contentstack", &installation("install")),
        stale.contentstack_webhook("/webhooks/contentstack", &installation("install")),
    ] {
        assert_eq!(send(&router, request).await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = send(
        &router,
        kit.app_token_page_load("/ui/sidebar", &json!({"app_uid": "another-app"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_uninstall_event_forgets_the_stacks_oauth_tokens_and_no_other() {
    use countersign::contentstack::oauth::{AccessToken, RefreshToken};
    use countersign::contentstack::oauth::{Installation, StoredTokens, TokenStore as _};

    let kit = TestKit::new();
    let (router, store) = router_and_store(&kit, "uninstall-tokens");
    let dir = std::env::temp_dir().join(format!(
        "marketplace-app-uninstall-key-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let key = example_support::sealed::SealingKeys::configured_or_kept(None, &dir).unwrap();
    let tokens = store::SealedTokens::new(store, std::sync::Arc::new(key));
    let of = |stack: &str| Installation {
        organization_uid: TestKit::ORGANIZATION.into(),
        stack_api_key: Some(stack.into()),
    };
    let set = StoredTokens {
        access_token: AccessToken::new("at"),
        refresh_token: Some(RefreshToken::new("rt")),
        expires_at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000),
        lifetime: std::time::Duration::from_secs(3_600),
        region: "NA".into(),
        // By Contentstack's clock: a minute ago (kept to the millisecond).
        authorized_at: std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(
                u64::try_from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis(),
                )
                .unwrap()
                    - 60_000,
            ),
    };
    tokens.save(&of(TestKit::STACK), &set).await.unwrap();
    tokens.save(&of("blt-another-stack"), &set).await.unwrap();

    let path = "/webhooks/contentstack";
    let (status, _) = send(
        &router,
        kit.contentstack_webhook(path, &installation("install")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        tokens.load(&of(TestKit::STACK)).await.unwrap().is_some(),
        "an install keeps them"
    );
    // An uninstall from before the app was authorized again (a late retry): the new tokens stay.
    let earlier = kit
        .clone()
        .at(std::time::SystemTime::now() - std::time::Duration::from_secs(120));
    let (status, _) = send(
        &router,
        earlier.contentstack_webhook(path, &installation("uninstall")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        tokens.load(&of(TestKit::STACK)).await.unwrap().is_some(),
        "an uninstall older than the tokens keeps them"
    );
    let (status, _) = send(
        &router,
        kit.contentstack_webhook(path, &installation("uninstall")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens.load(&of(TestKit::STACK)).await.unwrap(), None);
    assert_eq!(
        tokens.load(&of("blt-another-stack")).await.unwrap(),
        Some(set),
        "another stack's tokens stay"
    );
}

#[tokio::test]
async fn without_an_oauth_client_the_oauth_routes_say_what_to_set() {
    let kit = TestKit::new();
    let router = router(&kit, "no-oauth");
    let (status, body) = send(
        &router,
        Request::get("/oauth/callback?code=c&location=NA")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("oauth_not_configured"), "{body}");
}

/// A session of `stack`'s (through a UI location's page).
async fn session_of(app: &App, kit: &TestKit, stack: &str) -> String {
    let (status, page) = send(
        app,
        kit.app_token_page_load("/ui/sidebar", &json!({"stack_api_key": stack})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    session_in(&page)
}

fn with_session(request: http::request::Builder, token: &str) -> Request<Body> {
    request
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_stacks_session_lists_and_retries_its_own_dead_letters_only() {
    let kit = TestKit::new();
    let (app, store) = router_and_store(&kit, "dead-letters");
    let path = "/webhooks/contentstack";
    send(
        &app,
        kit.contentstack_webhook(path, &installation("install")),
    )
    .await;
    // A delivery whose every attempt failed (the database was down, say), of this stack.
    let body = publish().to_bytes(std::time::SystemTime::now());
    store
        .sqlite_connection()
        .lock()
        .unwrap()
        .execute(
            "INSERT INTO countersign_inbox (id, provider, tenant, body, signed_headers, state,
                attempts, due_at, received_at, expires_at, last_error)
             VALUES ('d1', 'contentstack', ?1, ?2, '[]', 'dead', 8, 0, 1, 9999999999999,
                'the database did not answer in time')",
            rusqlite::params![TestKit::STACK, body],
        )
        .unwrap();
    let ours = session_of(&app, &kit, TestKit::STACK).await;
    let theirs = session_of(&app, &kit, "blt-another-stack").await;

    let list = |token: &str| with_session(Request::get("/api/deliveries?state=dead"), token);
    let (status, listed) = send(&app, list(&ours)).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["deliveries"][0]["id"], "d1");
    assert_eq!(listed["deliveries"][0]["attempts"], 8);
    let (_, listed) = send(&app, list(&theirs)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()["deliveries"],
        json!([]),
        "another stack sees none of ours"
    );
    let (status, body) = send(
        &app,
        with_session(Request::get("/api/deliveries?state=pending"), &ours),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("invalid_state"), "{body}");

    let retry = |token: &str| with_session(Request::post("/api/deliveries/d1/retry"), token);
    let (status, body) = send(&app, retry(&theirs)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not another stack's: {body}");
    assert!(body.contains("dead_letter_not_found"), "{body}");
    let (status, body) = send(&app, retry(&ours)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    handled(&app.deliveries).await;
    let (_, events) = send(&app, with_session(Request::get("/api/events"), &ours)).await;
    let events: Value = serde_json::from_str(&events).unwrap();
    assert_eq!(
        events["events"][0]["event"], "publish",
        "handled once retried"
    );
    let (status, _) = send(&app, retry(&ours)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not dead any more");
}

#[tokio::test]
async fn an_installation_event_older_than_the_record_changes_nothing() {
    let kit = TestKit::new();
    let app = router(&kit, "installation-order");
    let path = "/webhooks/contentstack";
    let (status, _) = send(
        &app,
        kit.contentstack_webhook(path, &installation("install")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // An uninstall triggered before that install, arriving after it (a retry, a dead letter
    // tried again): the stack stays installed.
    let earlier = kit
        .clone()
        .at(std::time::SystemTime::now() - std::time::Duration::from_secs(120));
    let (status, _) = send(
        &app,
        earlier.contentstack_webhook(path, &installation("uninstall")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(&app, kit.contentstack_webhook(path, &publish())).await;
    assert_eq!(status, StatusCode::OK, "still installed: {body}");
    // A later uninstall does uninstall it.
    let (status, _) = send(
        &app,
        kit.contentstack_webhook(path, &installation("uninstall")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let later = WebhookBody::new("entry", "publish")
        .with_api_key(TestKit::STACK)
        .with_data(&json!({"entry": {"uid": "blt2"}}));
    let (status, _) = send(&app, kit.contentstack_webhook(path, &later)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
