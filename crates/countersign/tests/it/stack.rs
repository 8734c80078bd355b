//! Every layer stacked in front of a `Json<T>` handler, cheap checks first.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::Duration;

use crate::common::*;
use axum::routing::post;
use axum::{Json, Router};
use countersign::contentstack::{StaticKeys, WebhookVerifier};
use countersign::credentials::{BasicAuth, RequiredHeaders};
use countersign::ip::{ForwardedHeader, IpAllowlist};
use countersign::{
    BasicAuthLayer, ClientIp, ContentstackWebhookLayer, IpAllowlistLayer, RequiredHeadersLayer,
};
use serde::Deserialize;
use tower::ServiceBuilder;

#[derive(Deserialize)]
struct Delivery {
    event: String,
    data: serde_json::Value,
}

async fn handler(ClientIp(client): ClientIp, Json(delivery): Json<Delivery>) -> String {
    format!(
        "{client} {} {}",
        delivery.event, delivery.data["entry"]["uid"]
    )
}

async fn stacked(allowed: &str) -> String {
    let layers = ServiceBuilder::new()
        .layer(
            IpAllowlistLayer::new(IpAllowlist::new([allowed]).unwrap()).with_trusted_proxies(
                IpAllowlist::new(["127.0.0.1"]).unwrap(),
                ForwardedHeader::XForwardedFor,
            ),
        )
        .layer(BasicAuthLayer::new(BasicAuth::new(["hook:pass"]).unwrap()))
        .layer(RequiredHeadersLayer::new(
            RequiredHeaders::new()
                .with_header("x-hook-token", ["t0k3n"])
                .unwrap(),
        ))
        .layer(
            ContentstackWebhookLayer::new(
                WebhookVerifier::new(),
                StaticKeys::parse(PUBLIC_A).unwrap(),
            )
            .with_body_limit(64 * 1024),
        );
    let app = Router::new()
        .route("/webhooks/contentstack", post(handler))
        .layer(layers);
    format!("http://{}/webhooks/contentstack", serve(app).await)
}

struct Delivered<'a> {
    forwarded_for: &'a str,
    credentials: &'a str,
    token: &'a str,
    signer: &'a str,
}

const GOOD: Delivered<'static> = Delivered {
    forwarded_for: "52.35.1.58",
    credentials: "aG9vazpwYXNz", // hook:pass
    token: "t0k3n",
    signer: PRIVATE_A,
};

async fn deliver(url: &str, how: &Delivered<'_>) -> reqwest::Response {
    let body = webhook_body(Duration::from_secs(1), r#"{"entry":{"uid":"blt7"}}"#);
    client()
        .post(url)
        .header("content-type", "application/json")
        .header("x-forwarded-for", how.forwarded_for)
        .header("authorization", format!("Basic {}", how.credentials))
        .header("x-hook-token", how.token)
        .header(
            "x-contentstack-request-signature",
            rsa_signature(how.signer, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_delivery_that_passes_every_check_reaches_the_json_handler() {
    let url = stacked("52.35.1.58").await;
    let response = deliver(&url, &GOOD).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "52.35.1.58 publish \"blt7\""
    );
}

#[tokio::test]
async fn each_check_rejects_with_its_own_code() {
    let url = stacked("52.35.1.58").await;
    let cases = [
        (
            Delivered {
                forwarded_for: "198.51.100.1",
                ..GOOD
            },
            403,
            "ip_not_allowed",
        ),
        (
            Delivered {
                credentials: "aG9vazp4",
                ..GOOD
            },
            401,
            "basic_auth_mismatch",
        ),
        (
            Delivered {
                token: "wrong",
                ..GOOD
            },
            401,
            "header_mismatch",
        ),
        (
            Delivered {
                signer: PRIVATE_B,
                ..GOOD
            },
            401,
            "signature_mismatch",
        ),
    ];
    for (how, status, code) in cases {
        let (got_status, p) = problem(deliver(&url, &how).await).await;
        assert_eq!((got_status, p["code"].as_str()), (status, Some(code)));
    }
}

#[tokio::test]
async fn cheap_checks_run_before_the_body_is_read() {
    let url = stacked("52.35.1.58").await;
    // Everything wrong at once: the address check answers first.
    let all_wrong = Delivered {
        forwarded_for: "198.51.100.1",
        credentials: "eA==",
        token: "x",
        signer: PRIVATE_B,
    };
    let (status, p) = problem(deliver(&url, &all_wrong).await).await;
    assert_eq!((status, p["code"].as_str()), (403, Some("ip_not_allowed")));

    // A huge declared body from a disallowed address is refused for the address, unread.
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let head = "POST /webhooks/contentstack HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.1\r\nContent-Length: 104857600\r\n\r\n";
    assert!(
        raw_status(addr, head, &[], Duration::ZERO)
            .await
            .contains(" 403 ")
    );
    // The same from the allowed address with good credentials: refused for its size, unread.
    let head = "POST /webhooks/contentstack HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 52.35.1.58\r\n\
                Authorization: Basic aG9vazpwYXNz\r\nX-Hook-Token: t0k3n\r\nContent-Length: 104857600\r\n\r\n";
    assert!(
        raw_status(addr, head, &[], Duration::ZERO)
            .await
            .contains(" 413 ")
    );
}
