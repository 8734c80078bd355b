//! The delivery's identity against the reference signer, run live: Node's own crypto (the way
//! Contentstack signs) signs one delivery afresh for every attempt, and the real layers on a
//! real server handle it once.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::post;
use countersign::ContentstackWebhookLayer;
use countersign::contentstack::{SaltLength, SigningKey, StaticKeys, WebhookBody, WebhookVerifier};
use countersign::replay::{DeliveryId, MemoryStore, ReplayGuardLayer};
use countersign_tests::run_node;
use serde_json::json;
use tower::ServiceBuilder;

const PRIVATE: &str =
    include_str!("../../../crates/countersign-core/tests/data/keys/contentstack-a.private.pem");
const PUBLIC: &str =
    include_str!("../../../crates/countersign-core/tests/data/keys/contentstack-a.public.pem");

#[tokio::test]
async fn a_delivery_the_reference_signer_signs_afresh_for_each_attempt_is_handled_once() {
    let body = WebhookBody::new("entry", "publish")
        .with_api_key("blt1")
        .with_data(&serde_json::json!({"entry": {"uid": "blt9"}}))
        .to_json(SystemTime::now() - Duration::from_secs(1));
    // Five attempts, as Contentstack's schedule makes them, each signed by Node afresh, with
    // either salt length.
    let ours = SigningKey::from_pem(PRIVATE)
        .unwrap()
        .sign_webhook(body.as_bytes(), SaltLength::Digest)
        .unwrap();
    let salts = ["digest", "max", "digest", "max", "digest"];
    let input = json!({
        "private_pem": PRIVATE, "public_pem": PUBLIC,
        "rsa": salts.iter().map(|salt| json!({"body": body, "ours": ours, "salt": salt})).collect::<Vec<_>>(),
        "hmac": [], "tokens": [], "json": [],
    });
    let output = tokio::task::spawn_blocking(move || run_node("contentstack.mjs", &input))
        .await
        .unwrap();
    let signatures: Vec<String> = output["rsa"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node_signature"].as_str().unwrap().to_owned())
        .collect();
    let distinct: std::collections::HashSet<&String> = signatures.iter().collect();
    assert_eq!(
        distinct.len(),
        5,
        "RSA-PSS: every signing gives other bytes"
    );

    let handled = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (counter, seen) = (handled.clone(), ids.clone());
    let handler = post(move |DeliveryId(id): DeliveryId| {
        let (counter, seen) = (counter.clone(), seen.clone());
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            seen.lock().unwrap().push(id.to_hex());
            "handled"
        }
    });
    let layers = ServiceBuilder::new()
        .layer(ContentstackWebhookLayer::new(
            WebhookVerifier::new(),
            StaticKeys::parse(PUBLIC).unwrap(),
        ))
        .layer(ReplayGuardLayer::new(MemoryStore::new(100)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", handler.layer(layers));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut answers = Vec::new();
    for signature in &signatures {
        let response = client
            .post(format!("http://{addr}/hook"))
            .header("x-contentstack-request-signature", signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let replay = response
            .headers()
            .get("x-countersign-replay")
            .map(|v| v.to_str().unwrap().to_owned());
        answers.push((response.status().as_u16(), replay));
    }
    assert_eq!(answers[0], (200, None), "the first attempt is handled");
    for answer in &answers[1..] {
        assert_eq!(answer, &(200, Some("duplicate".to_owned())), "{answers:?}");
    }
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    assert_eq!(ids.lock().unwrap().len(), 1);
}
