//! The servers of the end-to-end benchmark: the same axum endpoint bare, behind the Contentful
//! layer, and behind the Contentstack webhook layer.
//!
//! `bench-server <bare|contentful|contentstack|uploads> <addr>`

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use countersign::contentful::{RequestVerifier, SigningSecret};
use countersign::contentstack::{StaticKeys, WebhookVerifier};
use countersign::{ContentfulRequestLayer, ContentstackWebhookLayer};

const PUBLIC: &str =
    include_str!("../../../crates/countersign-core/tests/data/keys/contentstack-a.public.pem");
const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

async fn handler(body: Bytes) -> String {
    format!("ok {}", body.len())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, addr) = (args[1].as_str(), args[2].as_str());
    let route = post(handler);
    let app = match mode {
        "bare" => Router::new().route("/webhook", route),
        "contentful" => Router::new().route(
            "/webhook",
            route.layer(ContentfulRequestLayer::new(RequestVerifier::new(
                SigningSecret::new(SECRET).unwrap(),
            ))),
        ),
        "contentstack" => Router::new().route(
            "/webhook",
            route.layer(ContentstackWebhookLayer::new(
                WebhookVerifier::new().with_tolerance(Duration::from_secs(24 * 3600)),
                StaticKeys::parse(PUBLIC).unwrap(),
            )),
        ),
        "uploads" => Router::new().route(
            "/webhook",
            route.layer(
                ContentfulRequestLayer::new(RequestVerifier::new(
                    SigningSecret::new(SECRET).unwrap(),
                ))
                .with_body_limit(1024 * 1024)
                .with_read_timeout(Duration::from_secs(60)),
            ),
        ),
        other => panic!("unknown mode {other}"),
    };
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}
