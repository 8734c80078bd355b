//! The `testing` feature: every request the kit builds passes the layer that verifies its
//! scheme, carries what it says it carries, and fails where a real one would (another key,
//! another secret, a stale time).

#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::routing::{get, post};
use countersign::contentful::{Action, Entity, SigningSecret};
use countersign::contentstack::session::{AppSession, AppTokenLayer, SessionKey, Sessions};
use countersign::contentstack::{Event, HmacSecret, Module, Phase, SigningKey, WebhookBody};
use countersign::replay::{MemoryStore, ReplayGuardLayer};
use countersign::testing::TestKit;
use countersign::{
    ContentfulRequest, ContentfulRequestLayer, ContentstackWebhook, ContentstackWebhookLayer,
};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

async fn contentstack(webhook: ContentstackWebhook) -> axum::Json<Value> {
    axum::Json(json!({
        "module": webhook.module(),
        "event": webhook.event(),
        "api_key": webhook.api_key(),
        "data": webhook.data,
        "hmac": matches!(webhook.verified_by(), countersign::contentstack::VerifiedBy::Hmac { .. }),
    }))
}

async fn contentful(request: ContentfulRequest) -> axum::Json<Value> {
    axum::Json(json!({
        "topic": request.topic(),
        "entry_published": request.topic().is_some_and(|t| t.is(Entity::Entry, Action::Publish)),
        "idempotency_key": request.idempotency_key(),
        "space": request.space_id(),
        "environment": request.environment_id(),
        "user": request.user_id(),
        "app": request.app_id(),
        "body": String::from_utf8_lossy(request.body()),
    }))
}

async fn page(session: AppSession) -> axum::Json<Value> {
    axum::Json(json!({
        "organization": session.organization_uid(),
        "stack": session.stack_api_key(),
        "user": session.user_uid(),
    }))
}

fn app(kit: &TestKit) -> Router {
    let sessions =
        Sessions::new([SessionKey::new([7; 32]).unwrap()]).with_app_uid(TestKit::APP_UID);
    Router::new()
        .route(
            "/contentstack",
            post(contentstack).layer(ContentstackWebhookLayer::new(
                kit.webhook_verifier(),
                kit.contentstack_keys(),
            )),
        )
        .route(
            "/contentful",
            post(contentful).layer(
                tower::ServiceBuilder::new()
                    .layer(ContentfulRequestLayer::new(kit.contentful_verifier()))
                    .layer(ReplayGuardLayer::new(MemoryStore::new(100))),
            ),
        )
        .route(
            "/ui/sidebar",
            get(page).layer(AppTokenLayer::new(
                kit.app_token_verifier(),
                kit.contentstack_keys(),
                sessions,
            )),
        )
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn assert_refused(router: &Router, request: Request<Body>, code: &str) {
    let (status, body) = send(router, request).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some(code))
    );
}

fn publish() -> WebhookBody {
    WebhookBody::new("entry", "publish.success")
        .with_api_key(TestKit::STACK)
        .with_data(&json!({"entry": {"uid": "blt1"}}))
}

#[tokio::test]
async fn contentstack_webhooks_by_rsa_and_hmac_pass_with_their_envelope() {
    let kit = TestKit::new();
    let router = app(&kit);
    for (request, hmac) in [
        (kit.contentstack_webhook("/contentstack", &publish()), false),
        (
            kit.contentstack_hmac_webhook("/contentstack", &publish()),
            true,
        ),
    ] {
        let (status, body) = send(&router, request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["module"], json!(Module::Entry));
        assert_eq!(body["event"], json!(Event::Publish(Some(Phase::Success))));
        assert_eq!(body["api_key"], TestKit::STACK);
        assert_eq!(body["data"], json!({"entry": {"uid": "blt1"}}));
        assert_eq!(body["hmac"], hmac);
    }
}

#[tokio::test]
async fn contentstack_webhooks_signed_otherwise_or_stale_are_refused() {
    let kit = TestKit::new();
    let router = app(&kit);
    let other_key = TestKit::new().with_contentstack_key(SigningKey::generate().unwrap());
    let other_secret =
        TestKit::new().with_contentstack_hmac_secret(HmacSecret::new("another secret").unwrap());
    let stale = TestKit::new().at(SystemTime::now() - Duration::from_secs(3600));
    for (request, code) in [
        (
            other_key.contentstack_webhook("/contentstack", &publish()),
            "signature_mismatch",
        ),
        (
            other_secret.contentstack_hmac_webhook("/contentstack", &publish()),
            "signature_mismatch",
        ),
        (
            stale.contentstack_webhook("/contentstack", &publish()),
            "timestamp_expired",
        ),
    ] {
        assert_refused(&router, request, code).await;
    }
}

#[tokio::test]
async fn contentful_webhooks_app_events_and_actions_pass_with_their_context() {
    let kit = TestKit::new();
    let router = app(&kit);
    let (status, body) = send(
        &router,
        kit.contentful_webhook(
            "/contentful",
            "ContentManagement.Entry.publish",
            r#"{"sys":{"id":"e1"}}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["entry_published"], true);
    assert_eq!(body["space"], TestKit::SPACE);
    assert_eq!(body["environment"], TestKit::ENVIRONMENT);
    assert_eq!(body["body"], r#"{"sys":{"id":"e1"}}"#);
    assert_eq!(body["idempotency_key"].as_str().unwrap().len(), 32);

    let event = || {
        kit.contentful_app_event(
            "/contentful",
            "ContentManagement.Asset.delete",
            "{}",
            "delivery-1",
        )
    };
    let (status, body) = send(&router, event()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["topic"], "ContentManagement.Asset.delete");
    assert_eq!(body["idempotency_key"], "delivery-1");
    // A retry of the same app event: acknowledged, not handled again.
    let (status, body) = send(&router, event()).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "duplicate"}))
    );

    let (status, body) = send(
        &router,
        kit.contentful_action("/contentful?run=1", "user-9", r#"{"x":1}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"], "user-9");
    assert_eq!(body["app"], TestKit::APP_DEFINITION);
    assert_eq!(body["topic"], Value::Null);
}

#[tokio::test]
async fn contentful_requests_signed_with_another_secret_or_stale_are_refused() {
    let kit = TestKit::new();
    let router = app(&kit);
    let other = TestKit::new().with_contentful_secret(SigningSecret::generate().unwrap());
    let stale = TestKit::new().at(SystemTime::now() - Duration::from_secs(120));
    for (request, code) in [
        (
            other.contentful_action("/contentful", "u", "{}"),
            "signature_mismatch",
        ),
        (
            stale.contentful_webhook("/contentful", "ContentManagement.Entry.save", "{}"),
            "timestamp_expired",
        ),
    ] {
        assert_refused(&router, request, code).await;
    }
}

#[tokio::test]
async fn an_app_token_page_load_opens_a_session_scoped_to_its_claims() {
    let kit = TestKit::new();
    let router = app(&kit);
    let (status, body) = send(&router, kit.app_token_page_load("/ui/sidebar", &json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"organization": TestKit::ORGANIZATION, "stack": TestKit::STACK, "user": TestKit::USER})
    );
    // An organization app: no stack.
    let (_, body) = send(
        &router,
        kit.app_token_page_load("/ui/sidebar?x=1", &json!({"stack_api_key": null})),
    )
    .await;
    assert_eq!(body["stack"], Value::Null);
    // Another app's token: refused.
    let (status, body) = send(
        &router,
        kit.app_token_page_load("/ui/sidebar", &json!({"app_uid": "other"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("app_token_app_mismatch"))
    );
}

#[test]
fn the_kit_never_prints_its_keys() {
    let kit = TestKit::new();
    let debug = format!("{kit:?}");
    let key_pem = kit.contentstack_signing_key().to_pkcs1_pem();
    let key_line = key_pem.lines().nth(2).unwrap();
    for secret in [kit.contentful_secret().expose(), key_line] {
        assert!(!debug.contains(secret), "{debug}");
    }
    let fingerprint = kit.contentstack_signing_key().public_key().fingerprint();
    assert!(debug.contains(fingerprint), "{debug}");
}

#[tokio::test]
async fn a_signature_of_a_method_the_verifier_is_not_set_up_for_says_which_setting_to_add() {
    let kit = TestKit::new();
    let route = |verifier| {
        Router::new().route(
            "/webhooks",
            post(contentstack).layer(ContentstackWebhookLayer::new(
                verifier,
                kit.contentstack_keys(),
            )),
        )
    };
    // An HMAC-signed webhook, and a verifier with no HMAC secret (the default's RSA only).
    let rsa_only = route(countersign::contentstack::WebhookVerifier::new());
    let hmac = kit.contentstack_hmac_webhook("/webhooks", &publish());
    let response = rsa_only.oneshot(hmac).await.unwrap();
    let rejection = response
        .extensions()
        .get::<countersign::Rejection>()
        .cloned()
        .unwrap();
    assert_eq!(
        (rejection.status(), rejection.code()),
        (StatusCode::UNAUTHORIZED, "signature_method_not_configured")
    );
    assert!(
        rejection.message().contains("with_stack_hmac_secret"),
        "{rejection}"
    );
    // An RSA-signed webhook, and a verifier that takes HMAC only.
    let hmac_only = route(countersign::contentstack::WebhookVerifier::hmac_only(
        kit.contentstack_hmac_secret(),
    ));
    let rsa = kit.contentstack_webhook("/webhooks", &publish());
    assert_refused(&hmac_only, rsa, "signature_method_not_configured").await;
    // With no signature at all, it is missing.
    let unsigned = Request::post("/webhooks").body(Body::from("{}")).unwrap();
    let rsa_only = route(countersign::contentstack::WebhookVerifier::new());
    assert_refused(&rsa_only, unsigned, "signature_missing").await;
}
