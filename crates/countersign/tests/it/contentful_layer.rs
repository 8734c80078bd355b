//! `ContentfulRequestLayer` end to end: a real axum server on loopback, a real HTTP client, real
//! signatures.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::Duration;

use crate::common::*;
use axum::routing::post;
use axum::{Json, Router};
use countersign::contentful::{Context, RequestVerifier, SigningSecret};
use countersign::ip::IpAllowlist;
use countersign::{Clock, ContentfulRequest, ContentfulRequestLayer};
use serde_json::{Value, json};

async fn echo(request: ContentfulRequest, Json(body): Json<Value>) -> Json<Value> {
    Json(json!({
        "space": request.space_id(),
        "user": request.user_id(),
        "topic": request.topic(),
        "secret_index": request.secret_index(),
        "body": body,
    }))
}

fn verifier() -> RequestVerifier {
    RequestVerifier::new(SigningSecret::new(SECRET).unwrap())
}

async fn server(layer: ContentfulRequestLayer) -> String {
    let app = Router::new()
        .route("/hooks/{name}", post(echo))
        .layer(layer);
    format!("http://{}", serve(app).await)
}

async fn post_signed(
    base: &str,
    path: &str,
    secret: &str,
    body: &str,
    context: &Context,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json");
    for (name, value) in contentful_headers(secret, "POST", path, body.as_bytes(), context) {
        request = request.header(name, value);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.body(body.to_owned()).send().await.unwrap()
}

#[tokio::test]
async fn a_signed_request_reaches_a_json_handler_with_its_verified_context() {
    let base = server(ContentfulRequestLayer::new(verifier())).await;
    let context = Context {
        space_id: Some("space-1".into()),
        user_id: Some("user-9".into()),
        ..Context::default()
    };
    let response = post_signed(
        &base,
        "/hooks/entry?x=1",
        SECRET,
        r#"{"sys":{"id":"e1"}}"#,
        &context,
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["space"], "space-1");
    assert_eq!(body["user"], "user-9");
    assert_eq!(body["body"]["sys"]["id"], "e1");
}

#[tokio::test]
async fn a_forged_request_is_401_problem_json_without_secrets() {
    let base = server(ContentfulRequestLayer::new(verifier())).await;
    let response = post_signed(
        &base,
        "/hooks/entry",
        NEXT_SECRET,
        "{}",
        &Context::default(),
        &[],
    )
    .await;
    let (status, problem) = problem(response).await;
    assert_eq!(status, 401);
    assert_eq!(problem["code"], "signature_mismatch");
    assert_eq!(problem["status"], 401);
    assert_eq!(
        problem["type"],
        "urn:countersign:problem:signature_mismatch"
    );
    let text = problem.to_string();
    assert!(!text.contains(NEXT_SECRET) && !text.contains(SECRET));
}

#[tokio::test]
async fn a_changed_body_or_query_is_401() {
    let base = server(ContentfulRequestLayer::new(verifier())).await;
    let path = "/hooks/entry?x=1";
    let mut request = client()
        .post(format!("{base}/hooks/entry?x=2"))
        .header("content-type", "application/json");
    for (name, value) in contentful_headers(SECRET, "POST", path, b"{}", &Context::default()) {
        request = request.header(name, value);
    }
    assert_eq!(request.body("{}").send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn an_unsigned_request_is_401_signature_missing() {
    let base = server(ContentfulRequestLayer::new(verifier())).await;
    let response = client()
        .post(format!("{base}/hooks/x"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let (status, problem) = problem(response).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("signature_missing"))
    );
}

#[tokio::test]
async fn an_expired_request_is_401_timestamp_expired() {
    let later = Clock::from_fn(|| std::time::SystemTime::now() + Duration::from_secs(31));
    let base = server(ContentfulRequestLayer::new(verifier()).with_clock(later)).await;
    let response = post_signed(&base, "/hooks/x", SECRET, "{}", &Context::default(), &[]).await;
    let (status, problem) = problem(response).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("timestamp_expired"))
    );
}

#[tokio::test]
async fn both_secrets_verify_during_a_rotation() {
    let rotating = verifier().with_secret(SigningSecret::new(NEXT_SECRET).unwrap());
    let base = server(ContentfulRequestLayer::new(rotating)).await;
    for (secret, index) in [(SECRET, 0), (NEXT_SECRET, 1)] {
        let response = post_signed(&base, "/hooks/x", secret, "{}", &Context::default(), &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.json::<Value>().await.unwrap()["secret_index"],
            index
        );
    }
}

#[tokio::test]
async fn x_forwarded_prefix_is_trusted_from_trusted_proxies_only() {
    // Contentful called /api/hooks/x; the proxy stripped /api.
    let signed_for = "/api/hooks/x";
    let send = |base: String| async move {
        let mut request = client()
            .post(format!("{base}/hooks/x"))
            .header("content-type", "application/json")
            .header("x-forwarded-prefix", "/api");
        for (name, value) in
            contentful_headers(SECRET, "POST", signed_for, b"{}", &Context::default())
        {
            request = request.header(name, value);
        }
        request.body("{}").send().await.unwrap().status()
    };
    let trusting_loopback = ContentfulRequestLayer::new(
        verifier().with_forwarded_prefix(IpAllowlist::new(["127.0.0.1"]).unwrap()),
    );
    assert_eq!(send(server(trusting_loopback).await).await, 200);
    let trusting_others = ContentfulRequestLayer::new(
        verifier().with_forwarded_prefix(IpAllowlist::new(["10.0.0.0/8"]).unwrap()),
    );
    assert_eq!(send(server(trusting_others).await).await, 401);
    let configured = ContentfulRequestLayer::new(verifier().with_path_prefix("/api").unwrap());
    let base = server(configured).await;
    let mut request = client()
        .post(format!("{base}/hooks/x"))
        .header("content-type", "application/json");
    for (name, value) in contentful_headers(SECRET, "POST", signed_for, b"{}", &Context::default())
    {
        request = request.header(name, value);
    }
    assert_eq!(request.body("{}").send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_verified_requests() {
    let base = server(ContentfulRequestLayer::new(verifier())).await;
    let client = client();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (base, client) = (base.clone(), client.clone());
            tokio::spawn(async move {
                let path = format!("/hooks/n{i}");
                let body = format!(r#"{{"n":{i}}}"#);
                let mut request = client
                    .post(format!("{base}{path}"))
                    .header("content-type", "application/json");
                for (name, value) in
                    contentful_headers(SECRET, "POST", &path, body.as_bytes(), &Context::default())
                {
                    request = request.header(name, value);
                }
                let response = request.body(body).send().await.unwrap();
                (
                    response.status(),
                    response.json::<Value>().await.unwrap()["body"]["n"].clone(),
                )
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (status, n) = task.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(n, i);
    }
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_413_before_it_is_read() {
    let base = server(ContentfulRequestLayer::new(verifier()).with_body_limit(1024)).await;
    let addr = base.trim_start_matches("http://").parse().unwrap();
    let head = "POST /hooks/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n";
    // No body is sent at all: the answer comes from the declared length.
    assert!(
        raw_status(addr, head, &[], Duration::ZERO)
            .await
            .contains(" 413 ")
    );
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_413() {
    let base = server(ContentfulRequestLayer::new(verifier()).with_body_limit(1024)).await;
    let addr = base.trim_start_matches("http://").parse().unwrap();
    let head = "POST /hooks/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let chunk = format!("400\r\n{}\r\n", "a".repeat(1024));
    let parts: Vec<&[u8]> = vec![chunk.as_bytes(), chunk.as_bytes(), chunk.as_bytes()];
    assert!(
        raw_status(addr, head, &parts, Duration::from_millis(20))
            .await
            .contains(" 413 ")
    );
}

#[tokio::test]
async fn a_slow_body_is_408() {
    let base = server(
        ContentfulRequestLayer::new(verifier()).with_read_timeout(Duration::from_millis(300)),
    )
    .await;
    let addr = base.trim_start_matches("http://").parse().unwrap();
    let head = "POST /hooks/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    // Ten bytes, then nothing for longer than the bound.
    let status = raw_status(addr, head, &[b"0123456789"], Duration::from_millis(50)).await;
    assert!(status.contains(" 408 "), "{status}");
}
