//! The IP allowlist, Basic auth and required-header layers end to end, customized answers,
//! the rejection in the answer's extensions, and extractors without their layer.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use crate::common::*;
use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing::get;
use countersign::credentials::{BasicAuth, RequiredHeaders};
use countersign::ip::{ForwardedHeader, IpAllowlist};
use countersign::{
    BasicAuthLayer, ClientIp, ContentfulRequest, IpAllowlistLayer, Rejection, RequiredHeadersLayer,
};
use http::{Request, StatusCode};
use tower::ServiceExt as _;

async fn whoami(ClientIp(ip): ClientIp) -> String {
    ip.to_string()
}

async fn ip_server(bind: &str, layer: IpAllowlistLayer) -> String {
    let addr = serve_on(bind, Router::new().route("/", get(whoami)).layer(layer)).await;
    format!("http://{addr}")
}

fn allow(networks: &[&str]) -> IpAllowlist {
    IpAllowlist::new(networks).unwrap()
}

#[tokio::test]
async fn the_socket_peer_is_checked_against_the_allowlist() {
    let allowed = ip_server("127.0.0.1", IpAllowlistLayer::new(allow(&["127.0.0.0/8"]))).await;
    let response = client().get(&allowed).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "127.0.0.1");

    let denied = ip_server("127.0.0.1", IpAllowlistLayer::new(allow(&["10.0.0.0/8"]))).await;
    let (status, p) = problem(client().get(&denied).send().await.unwrap()).await;
    assert_eq!((status, p["code"].as_str()), (403, Some("ip_not_allowed")));
}

#[tokio::test]
async fn a_spoofed_forwarding_header_from_an_untrusted_peer_is_ignored() {
    let layer = IpAllowlistLayer::new(allow(&["52.35.1.58"]))
        .with_trusted_proxies(allow(&["10.0.0.0/8"]), ForwardedHeader::XForwardedFor);
    let base = ip_server("127.0.0.1", layer).await;
    let response = client()
        .get(&base)
        .header("x-forwarded-for", "52.35.1.58")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_first_untrusted_hop_is_the_client() {
    let layer = IpAllowlistLayer::new(allow(&["52.35.1.58"])).with_trusted_proxies(
        allow(&["127.0.0.1", "10.0.0.0/8"]),
        ForwardedHeader::XForwardedFor,
    );
    let base = ip_server("127.0.0.1", layer).await;
    // The client prepended a fake; the proxies appended the real address.
    let response = client()
        .get(&base)
        .header("x-forwarded-for", "20.98.104.159, 52.35.1.58, 10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "52.35.1.58");
    let response = client()
        .get(&base)
        .header("x-forwarded-for", "52.35.1.58, 198.51.100.9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_trusted_proxys_unreadable_chain_is_refused_not_taken_for_the_proxy() {
    // The proxy is both trusted and allowlisted: falling back to its address let anyone in.
    let layer = IpAllowlistLayer::new(allow(&["127.0.0.1", "52.35.1.58"]))
        .with_trusted_proxies(allow(&["127.0.0.1"]), ForwardedHeader::XForwardedFor);
    let base = ip_server("127.0.0.1", layer).await;
    for chain in [
        &b"198.51.100.9\xff"[..],
        b"garbage",
        b"198.51.100.9, unknown",
    ] {
        let response = client()
            .get(&base)
            .header(
                "x-forwarded-for",
                http::HeaderValue::from_bytes(chain).unwrap(),
            )
            .send()
            .await
            .unwrap();
        let (status, p) = problem(response).await;
        assert_eq!(
            (status, p["code"].as_str()),
            (400, Some("forwarding_unreadable")),
            "{chain:?}"
        );
    }
    // A readable chain still resolves.
    let response = client()
        .get(&base)
        .header("x-forwarded-for", "garbage, 52.35.1.58")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "52.35.1.58");
}

#[tokio::test]
async fn forwarded_and_x_real_ip_as_configured() {
    let forwarded = IpAllowlistLayer::new(allow(&["2001:db8::/32"]))
        .with_trusted_proxies(allow(&["127.0.0.1"]), ForwardedHeader::Forwarded);
    let base = ip_server("127.0.0.1", forwarded).await;
    let response = client()
        .get(&base)
        .header("forwarded", r#"for="[2001:db8::7]:443";proto=https"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "2001:db8::7");

    let real_ip = IpAllowlistLayer::new(allow(&["203.0.113.0/24"]))
        .with_trusted_proxies(allow(&["127.0.0.1"]), ForwardedHeader::XRealIp);
    let base = ip_server("127.0.0.1", real_ip).await;
    let response = client()
        .get(&base)
        .header("x-real-ip", "203.0.113.50")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "203.0.113.50");
    // The X-Forwarded-For a client sends is not what this layer reads.
    let response = client()
        .get(&base)
        .header("x-forwarded-for", "203.0.113.50")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn ipv6_peers_are_checked() {
    let allowed = ip_server("::1", IpAllowlistLayer::new(allow(&["::1/128"]))).await;
    let response = client().get(&allowed).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "::1");
    let v4_only = ip_server("::1", IpAllowlistLayer::new(allow(&["127.0.0.1"]))).await;
    assert_eq!(client().get(&v4_only).send().await.unwrap().status(), 403);
}

#[tokio::test]
async fn without_connect_info_the_allowlist_fails_closed_and_says_why() {
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(IpAllowlistLayer::new(allow(&["0.0.0.0/0"])));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (status, p) = problem(
        client()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (500, Some("connect_info_missing"))
    );
}

fn basic(pair: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[tokio::test]
async fn basic_auth_accepts_both_pairs_of_a_rotation() {
    let layer = BasicAuthLayer::new(BasicAuth::new(["hook:old-pass", "hook:new-pass"]).unwrap());
    let base = format!(
        "http://{}",
        serve(
            Router::new()
                .route("/", get(|| async { "ok" }))
                .layer(layer)
        )
        .await
    );
    for pair in ["hook:old-pass", "hook:new-pass"] {
        let response = client()
            .get(&base)
            .header("authorization", basic(pair))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{pair}");
    }
    let response = client()
        .get(&base)
        .header("authorization", basic("hook:guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Basic realm="countersign", charset="UTF-8""#
    );
    let (status, p) = problem(response).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (401, Some("basic_auth_mismatch"))
    );
    let (status, p) = problem(client().get(&base).send().await.unwrap()).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (401, Some("basic_auth_missing"))
    );
}

#[tokio::test]
async fn required_headers_accept_every_value_of_a_rotation() {
    let required = RequiredHeaders::new()
        .with_header("x-hook-token", ["old-token", "new-token"])
        .unwrap();
    let layer = RequiredHeadersLayer::new(required);
    let base = format!(
        "http://{}",
        serve(
            Router::new()
                .route("/", get(|| async { "ok" }))
                .layer(layer)
        )
        .await
    );
    for token in ["old-token", "new-token"] {
        assert_eq!(
            client()
                .get(&base)
                .header("x-hook-token", token)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let (status, p) = problem(
        client()
            .get(&base)
            .header("x-hook-token", "nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, p["code"].as_str()), (401, Some("header_mismatch")));
    let (status, p) = problem(client().get(&base).send().await.unwrap()).await;
    assert_eq!((status, p["code"].as_str()), (401, Some("header_missing")));
}

#[tokio::test]
async fn the_answer_can_be_replaced() {
    let layer = BasicAuthLayer::new(BasicAuth::new(["u:p"]).unwrap()).on_rejection(
        |rejection: &Rejection| {
            (StatusCode::IM_A_TEAPOT, format!("no: {}", rejection.code())).into_response()
        },
    );
    let base = format!(
        "http://{}",
        serve(
            Router::new()
                .route("/", get(|| async { "ok" }))
                .layer(layer)
        )
        .await
    );
    let response = client().get(&base).send().await.unwrap();
    assert_eq!(response.status(), 418);
    assert_eq!(response.text().await.unwrap(), "no: basic_auth_missing");
}

#[tokio::test]
async fn the_rejection_is_in_the_answers_extensions_for_outer_layers() {
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(BasicAuthLayer::new(BasicAuth::new(["u:p"]).unwrap()));
    let response = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let rejection = response.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.code(), "basic_auth_missing");
    assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_extractor_without_its_layer_explains_the_misconfiguration() {
    let app = Router::new().route("/", get(|_: ContentfulRequest| async { "unreachable" }));
    let response = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let rejection = response.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.code(), "layer_missing");
    assert!(rejection.message().contains("ContentfulRequestLayer"));
}

/// A body that counts how often it is polled, for checks that must not read it.
struct Untouched(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl http_body::Body for Untouched {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::task::Poll::Ready(None)
    }
}

/// Calls `layer` around a handler that must not run, with a body that must not be read, from
/// `peer`; the answer must be ready at the first poll.
fn refused_at_once<G: countersign::guard::Guard>(
    layer: countersign::guard::GuardLayer<G>,
    peer: &str,
    headers: &[(&'static str, &str)],
) -> u16 {
    use std::future::Future as _;
    use tower::{Layer as _, Service as _};
    let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handler = tower::service_fn(|_: Request<Body>| async {
        panic!("the handler ran");
        #[allow(unreachable_code)]
        Ok::<_, std::convert::Infallible>(axum::response::Response::new(Body::empty()))
    });
    let mut service = layer.layer(handler);
    let mut request = Request::post("/")
        .body(Body::new(Untouched(polls.clone())))
        .unwrap();
    for (name, value) in headers {
        let value: http::HeaderValue = value.parse().unwrap();
        request.headers_mut().insert(*name, value);
    }
    let peer: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let mut answer = std::pin::pin!(service.call(request));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let std::task::Poll::Ready(Ok(response)) = answer.as_mut().poll(&mut cx) else {
        panic!("the refusal was not answered at once");
    };
    assert_eq!(
        polls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the body was read"
    );
    response.status().as_u16()
}

#[test]
fn head_refusals_answer_at_once_without_reading_the_body() {
    let ip = IpAllowlistLayer::new(allow(&["10.0.0.0/8"]));
    assert_eq!(refused_at_once(ip, "192.0.2.1", &[]), 403);
    let basic = BasicAuthLayer::new(BasicAuth::new(["hook:secret"]).unwrap());
    assert_eq!(refused_at_once(basic, "192.0.2.1", &[]), 401);
    let headers = RequiredHeadersLayer::new(
        RequiredHeaders::new()
            .with_header("x-hook-token", ["t"])
            .unwrap(),
    );
    assert_eq!(refused_at_once(headers, "192.0.2.1", &[]), 401);
    let contentful =
        countersign::ContentfulRequestLayer::new(countersign::contentful::RequestVerifier::new(
            countersign::contentful::SigningSecret::new("a".repeat(64)).unwrap(),
        ))
        .with_body_limit(10);
    assert_eq!(
        refused_at_once(contentful, "192.0.2.1", &[("content-length", "11")]),
        413
    );
}
