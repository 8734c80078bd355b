//! `ContentstackWebhookLayer` end to end: a real axum server on loopback, a real HTTP client,
//! real RSA and HMAC signatures, and a real key endpoint.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::Duration;

use crate::common::*;
use axum::Router;
#[cfg(feature = "well-known")]
use axum::routing::get;
use axum::routing::post;
use countersign::contentstack::NoKeys;
#[cfg(feature = "well-known")]
use countersign::contentstack::well_known::WellKnownKeys;
use countersign::contentstack::{HmacSecret, StaticKeys, WebhookVerifier};
use countersign::{ContentstackWebhook, ContentstackWebhookLayer, VerifiedBody};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct EntryData {
    entry: Entry,
}

#[derive(Deserialize)]
struct Entry {
    uid: String,
}

async fn typed(webhook: ContentstackWebhook<EntryData>) -> axum::Json<Value> {
    axum::Json(json!({
        "event": webhook.event(),
        "module": webhook.module(),
        "api_key": webhook.api_key(),
        "uid": webhook.data.entry.uid,
    }))
}

/// Echoes what the handler receives as its body, and what the layer verified.
async fn echo(VerifiedBody(verified): VerifiedBody, body: String) -> axum::Json<Value> {
    axum::Json(json!({ "body": body, "verified": String::from_utf8_lossy(&verified) }))
}

async fn server<K: countersign::contentstack::KeySource + Clone>(
    layer: ContentstackWebhookLayer<K>,
) -> String {
    let app = Router::new()
        .route("/webhooks/typed", post(typed))
        .route("/webhooks/echo", post(echo))
        .layer(layer);
    format!("http://{}", serve(app).await)
}

fn static_keys() -> StaticKeys {
    StaticKeys::parse(PUBLIC_A).unwrap()
}

async fn deliver(base: &str, path: &str, body: &str, header: (&str, &str)) -> reqwest::Response {
    client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header(header.0, header.1)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

const DATA: &str = r#"{"entry":{"uid":"blt42","title":"Hello"}}"#;

#[tokio::test]
async fn a_signed_delivery_reaches_the_handler_with_typed_data() {
    let base = server(ContentstackWebhookLayer::new(
        WebhookVerifier::new(),
        static_keys(),
    ))
    .await;
    let body = webhook_body(Duration::from_secs(2), DATA);
    let signature = rsa_signature(PRIVATE_A, &body);
    let response = deliver(
        &base,
        "/webhooks/typed",
        &body,
        ("x-contentstack-request-signature", &signature),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"event": "publish", "module": "entry", "api_key": "blt1", "uid": "blt42"})
    );
}

#[tokio::test]
async fn a_forged_or_stale_delivery_is_401() {
    let base = server(ContentstackWebhookLayer::new(
        WebhookVerifier::new(),
        static_keys(),
    ))
    .await;
    let body = webhook_body(Duration::from_secs(2), DATA);
    let forged = rsa_signature(PRIVATE_B, &body);
    let (status, p) = problem(
        deliver(
            &base,
            "/webhooks/typed",
            &body,
            ("x-contentstack-request-signature", &forged),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (401, Some("signature_mismatch"))
    );

    let stale = webhook_body(Duration::from_secs(2000), DATA);
    let signature = rsa_signature(PRIVATE_A, &stale);
    let (status, p) = problem(
        deliver(
            &base,
            "/webhooks/typed",
            &stale,
            ("x-contentstack-request-signature", &signature),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (401, Some("timestamp_expired"))
    );
}

#[cfg(feature = "well-known")]
#[tokio::test]
async fn no_key_available_is_503_so_that_contentstack_retries() {
    let nowhere =
        WellKnownKeys::from_url("http://127.0.0.1:9/.well-known/public-keys.json").unwrap();
    let base = server(ContentstackWebhookLayer::new(
        WebhookVerifier::new(),
        nowhere,
    ))
    .await;
    let body = webhook_body(Duration::from_secs(2), DATA);
    let signature = rsa_signature(PRIVATE_A, &body);
    let (status, p) = problem(
        deliver(
            &base,
            "/webhooks/typed",
            &body,
            ("x-contentstack-request-signature", &signature),
        )
        .await,
    )
    .await;
    assert_eq!((status, p["code"].as_str()), (503, Some("key_unavailable")));
}

#[cfg(feature = "well-known")]
#[tokio::test]
async fn a_rotated_key_is_picked_up_from_the_endpoint() {
    let document = std::sync::Arc::new(std::sync::Mutex::new(KEYS_JSON_A));
    let served = document.clone();
    let endpoint = Router::new().route(
        "/.well-known/public-keys.json",
        get(move || {
            let served = served.clone();
            async move { *served.lock().unwrap() }
        }),
    );
    let key_host = serve(endpoint).await;
    let keys = WellKnownKeys::for_region(&format!("http://{key_host}").parse().unwrap())
        .with_min_refetch_interval(Duration::ZERO);
    let base = server(ContentstackWebhookLayer::new(WebhookVerifier::new(), keys)).await;

    let body = webhook_body(Duration::from_secs(1), DATA);
    let with_a = rsa_signature(PRIVATE_A, &body);
    assert_eq!(
        deliver(
            &base,
            "/webhooks/typed",
            &body,
            ("x-contentstack-request-signature", &with_a)
        )
        .await
        .status(),
        200
    );
    *document.lock().unwrap() = KEYS_JSON_B;
    let with_b = rsa_signature(PRIVATE_B, &body);
    assert_eq!(
        deliver(
            &base,
            "/webhooks/typed",
            &body,
            ("x-contentstack-request-signature", &with_b)
        )
        .await
        .status(),
        200
    );
}

#[tokio::test]
async fn hmac_deliveries_with_either_secret_of_a_rotation() {
    let verifier = WebhookVerifier::hmac_only(HmacSecret::new("old-secret").unwrap())
        .with_hmac_secret(HmacSecret::new("new-secret").unwrap());
    let base = server(ContentstackWebhookLayer::new(verifier, NoKeys)).await;
    let body = webhook_body(Duration::from_secs(1), DATA);
    for secret in ["old-secret", "new-secret"] {
        let header = HmacSecret::new(secret)
            .unwrap()
            .sign(body.as_bytes(), std::time::SystemTime::now());
        let response = deliver(
            &base,
            "/webhooks/typed",
            &body,
            ("x-contentstack-hmac-signature", &header),
        )
        .await;
        assert_eq!(response.status(), 200, "{secret}");
    }
    let header = HmacSecret::new("other")
        .unwrap()
        .sign(body.as_bytes(), std::time::SystemTime::now());
    let (status, p) = problem(
        deliver(
            &base,
            "/webhooks/typed",
            &body,
            ("x-contentstack-hmac-signature", &header),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (401, Some("signature_mismatch"))
    );
}

#[tokio::test]
async fn after_the_json_fallback_the_handler_receives_the_canonical_bytes() {
    let verifier = WebhookVerifier::new().with_json_fallback(true);
    let base = server(ContentstackWebhookLayer::new(verifier, static_keys())).await;
    let canonical = webhook_body(Duration::from_secs(1), DATA);
    let signature = rsa_signature(PRIVATE_A, &canonical);
    let pretty = canonical.replace("\":", "\": ").replace(",\"", ",\n  \"");
    let response = deliver(
        &base,
        "/webhooks/echo",
        &pretty,
        ("x-contentstack-request-signature", &signature),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["body"], canonical.as_str());
    assert_eq!(answer["verified"], canonical.as_str());

    let strict = server(ContentstackWebhookLayer::new(
        WebhookVerifier::new(),
        static_keys(),
    ))
    .await;
    let response = deliver(
        &strict,
        "/webhooks/echo",
        &pretty,
        ("x-contentstack-request-signature", &signature),
    )
    .await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn data_that_does_not_fit_the_handlers_type_is_422() {
    let base = server(ContentstackWebhookLayer::new(
        WebhookVerifier::new(),
        static_keys(),
    ))
    .await;
    let body = webhook_body(Duration::from_secs(1), r#"{"asset":{"uid":"x"}}"#);
    let signature = rsa_signature(PRIVATE_A, &body);
    let (status, p) = problem(
        deliver(
            &base,
            "/webhooks/typed",
            &body,
            ("x-contentstack-request-signature", &signature),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (422, Some("webhook_data_invalid"))
    );
}

#[tokio::test]
async fn an_oversized_delivery_is_413() {
    let layer =
        ContentstackWebhookLayer::new(WebhookVerifier::new(), static_keys()).with_body_limit(256);
    let base = server(layer).await;
    let body = webhook_body(
        Duration::from_secs(1),
        &format!(r#"{{"entry":{{"uid":"{}"}}}}"#, "x".repeat(400)),
    );
    let signature = rsa_signature(PRIVATE_A, &body);
    let (status, p) = problem(
        deliver(
            &base,
            "/webhooks/typed",
            &body,
            ("x-contentstack-request-signature", &signature),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (413, Some("payload_too_large"))
    );
}
