//! Shared helpers of the end-to-end tests: real servers on loopback, real clients, real keys.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use countersign::contentful::{Context, RequestToSign, SigningSecret, sign};
use countersign::contentstack::{SaltLength, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PRIVATE_A: &str =
    include_str!("../../../../countersign-core/tests/data/keys/contentstack-a.private.pem");
pub const PRIVATE_B: &str =
    include_str!("../../../../countersign-core/tests/data/keys/contentstack-b.private.pem");
pub const PUBLIC_A: &str =
    include_str!("../../../../countersign-core/tests/data/keys/contentstack-a.public.pem");
pub const KEYS_JSON_A: &str =
    include_str!("../../../../countersign-core/tests/data/keys/contentstack-a.public-keys.json");
pub const KEYS_JSON_B: &str =
    include_str!("../../../../countersign-core/tests/data/keys/contentstack-b.public-keys.json");

pub const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const NEXT_SECRET: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// Serves `app` on a free port of `ip` with the peer address available; returns the address.
pub async fn serve_on(ip: &str, app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

pub async fn serve(app: Router) -> SocketAddr {
    serve_on("127.0.0.1", app).await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Contentful signature headers for a request signed now with `secret`.
pub fn contentful_headers(
    secret: &str,
    method: &str,
    path: &str,
    body: &[u8],
    context: &Context,
) -> Vec<(String, String)> {
    contentful_headers_with(secret, method, path, body, &[], context)
}

/// As [`contentful_headers`], with the request's own headers `own` signed too.
pub fn contentful_headers_with(
    secret: &str,
    method: &str,
    path: &str,
    body: &[u8],
    own: &[(&str, &str)],
    context: &Context,
) -> Vec<(String, String)> {
    let secret = SigningSecret::new(secret).unwrap();
    let mut request = RequestToSign::new(method.parse().unwrap(), path).with_body(body);
    for (name, value) in own {
        request = request.with_header(name, value);
    }
    sign(&secret, &request, SystemTime::now(), context)
        .unwrap()
        .iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// A Contentstack webhook body triggered `age` ago.
pub fn webhook_body(age: Duration, data: &str) -> String {
    countersign::contentstack::WebhookBody::new("entry", "publish")
        .with_api_key("blt1")
        .with_data(&serde_json::from_str(data).unwrap())
        .to_json(SystemTime::now() - age)
}

pub fn rsa_signature(private_pem: &str, body: &str) -> String {
    SigningKey::from_pem(private_pem)
        .unwrap()
        .sign_webhook(body.as_bytes(), SaltLength::Digest)
        .unwrap()
}

pub async fn problem(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    (status, response.json().await.unwrap())
}

pub fn epoch_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Sends raw bytes and reads the answer's status line (the first line), with a bound.
pub async fn raw_status(
    addr: SocketAddr,
    head: &str,
    body_parts: &[&[u8]],
    pause: Duration,
) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    for part in body_parts {
        // A server that already answered may close the connection: ignore write errors.
        let _ = stream.write_all(part).await;
        tokio::time::sleep(pause).await;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server answered within 10 s");
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}
