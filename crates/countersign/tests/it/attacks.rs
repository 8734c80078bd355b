//! The attack catalogue: each attack by name, through the real layers on a real server, and the
//! exact refusal it gets (status and reason code). `docs/security.md` lists the
//! same rows with what the library promises.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::{Duration, SystemTime};

use crate::common::*;
use axum::Router;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign::contentful::{Context, RequestVerifier, SigningSecret};
use countersign::contentstack::session::{AppTokenLayer, SessionKey, Sessions};
use countersign::contentstack::{
    AppTokenVerifier, SigningKey, StackAllowlist, StaticKeys, Tenancy, WebhookVerifier,
    mint_app_token,
};
use countersign::credentials::BasicAuth;
use countersign::ip::{ForwardedHeader, IpAllowlist};
use countersign::replay::{MemoryStore, REPLAY_HEADER, ReplayGuardLayer};
use countersign::{
    BasicAuthLayer, ContentfulRequestLayer, ContentstackWebhookLayer, IpAllowlistLayer,
};
use http::HeaderValue;
use serde_json::{Value, json};
use tower::ServiceBuilder;

const APP: &str = "app1";

/// One server with every protection, as an app would compose them.
async fn target() -> String {
    let keys = || StaticKeys::parse(PUBLIC_A).unwrap();
    let ui = AppTokenLayer::new(
        AppTokenVerifier::new().with_app_uid(APP),
        keys(),
        Sessions::new([SessionKey::new([9u8; 32]).unwrap()]),
    );
    let webhooks = ServiceBuilder::new()
        .layer(
            ContentstackWebhookLayer::new(WebhookVerifier::new(), keys())
                .with_tenancy(Tenancy::new().with_stacks(StackAllowlist::new(["blt1"])))
                .with_body_limit(64 * 1024)
                .with_read_timeout(Duration::from_millis(500)),
        )
        .layer(ReplayGuardLayer::new(MemoryStore::new(1_000)));
    let contentful = ServiceBuilder::new()
        .layer(ContentfulRequestLayer::new(RequestVerifier::new(
            SigningSecret::new(SECRET).unwrap(),
        )))
        .layer(ReplayGuardLayer::new(MemoryStore::new(1_000)));
    // The peer (127.0.0.1) is not a trusted proxy here...
    let untrusting = IpAllowlistLayer::new(IpAllowlist::new(["52.35.1.58"]).unwrap())
        .with_trusted_proxies(
            IpAllowlist::new(["10.0.0.0/8"]).unwrap(),
            ForwardedHeader::XForwardedFor,
        );
    // ...and here it is, and allowlisted itself.
    let trusting = IpAllowlistLayer::new(IpAllowlist::new(["127.0.0.1", "52.35.1.58"]).unwrap())
        .with_trusted_proxies(
            IpAllowlist::new(["127.0.0.1"]).unwrap(),
            ForwardedHeader::XForwardedFor,
        );
    let app = Router::new()
        .route("/ui", get(|| async { "page" }).layer(ui))
        .route(
            "/webhooks/contentstack",
            post(|| async { "handled" }).layer(webhooks),
        )
        .route(
            "/contentful",
            post(|| async { "handled" }).layer(contentful),
        )
        .route("/ip/direct", get(|| async { "in" }).layer(untrusting))
        .route("/ip/proxied", get(|| async { "in" }).layer(trusting))
        .route(
            "/basic",
            get(|| async { "in" }).layer(BasicAuthLayer::new(
                BasicAuth::new(["hook:s3cret"]).unwrap(),
            )),
        );
    format!("http://{}", serve(app).await)
}

async fn refusal(response: reqwest::Response) -> (u16, String) {
    let (status, body) = problem(response).await;
    (status, body["code"].as_str().unwrap().to_owned())
}

fn expect(got: (u16, String), status: u16, code: &str, attack: &str) {
    assert_eq!(got, (status, code.to_owned()), "{attack}");
}

// App-tokens

fn claims(app_uid: &str, expires_in: i64, not_before: Option<i64>) -> Value {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut claims = json!({
        "app_uid": app_uid, "installation_uid": "i", "organization_uid": "o", "user_uid": "u",
        "stack_api_key": "blt1", "iat": now - 1, "exp": now + expires_in,
    });
    if let Some(nbf) = not_before {
        claims["nbf"] = json!(now + nbf);
    }
    claims
}

fn rs256(claims: &Value, signer: &str) -> String {
    let key = SigningKey::from_pem(signer).unwrap();
    mint_app_token(&key, claims, SystemTime::now(), Duration::from_secs(300)).unwrap()
}

/// A JWT with `header` and `claims`, and `signature` as given.
fn jwt(header: &Value, claims: &Value, signature: &[u8]) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!(
        "{}.{}.{}",
        part(header),
        part(claims),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

async fn open_ui(base: &str, token: &str) -> reqwest::Response {
    client()
        .get(format!("{base}/ui?app-token={token}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn app_token_attacks_are_refused_each_with_its_code() {
    use hmac::Mac as _;
    let base = target().await;
    let good = claims(APP, 300, None);
    // The control: the real thing opens the page.
    assert_eq!(open_ui(&base, &rs256(&good, PRIVATE_A)).await.status(), 200);

    let none = jwt(&json!({"alg": "none", "typ": "JWT"}), &good, b"");
    expect(
        refusal(open_ui(&base, &none).await).await,
        401,
        "app_token_algorithm_not_allowed",
        "alg: none",
    );

    // HS256 keyed with the RSA public key, which anyone can download.
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let signing_input = {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        format!("{}.{}", part(&header), part(&good))
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(PUBLIC_A.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let confused = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    expect(
        refusal(open_ui(&base, &confused).await).await,
        401,
        "app_token_algorithm_not_allowed",
        "HS256 with the public key",
    );

    // RS512: the header names another algorithm than the pinned RS256.
    let real = rs256(&good, PRIVATE_A);
    let signature = URL_SAFE_NO_PAD
        .decode(real.rsplit('.').next().unwrap())
        .unwrap();
    let rs512 = jwt(&json!({"alg": "RS512", "typ": "JWT"}), &good, &signature);
    expect(
        refusal(open_ui(&base, &rs512).await).await,
        401,
        "app_token_algorithm_not_allowed",
        "RS512",
    );

    let expired = rs256(&claims(APP, -120, None), PRIVATE_A);
    expect(
        refusal(open_ui(&base, &expired).await).await,
        401,
        "app_token_expired",
        "expired",
    );

    let early = rs256(&claims(APP, 600, Some(300)), PRIVATE_A);
    expect(
        refusal(open_ui(&base, &early).await).await,
        401,
        "app_token_not_yet_valid",
        "not yet valid",
    );

    // Tampered: another stack in the claims, the signature of the original.
    let mut other = good.clone();
    other["stack_api_key"] = json!("blt-victim");
    let tampered = jwt(&json!({"alg": "RS256", "typ": "JWT"}), &other, &signature);
    expect(
        refusal(open_ui(&base, &tampered).await).await,
        401,
        "app_token_signature_mismatch",
        "tampered",
    );

    let foreign_key = rs256(&good, PRIVATE_B);
    expect(
        refusal(open_ui(&base, &foreign_key).await).await,
        401,
        "app_token_signature_mismatch",
        "signed by another key",
    );

    // Authentic (Contentstack signs every app's tokens with one key), but of another app.
    let other_app = rs256(&claims("app-other", 300, None), PRIVATE_A);
    expect(
        refusal(open_ui(&base, &other_app).await).await,
        403,
        "app_token_app_mismatch",
        "another app's token",
    );
}

// Webhooks

async fn deliver(base: &str, body: &str, signature: &str) -> reqwest::Response {
    client()
        .post(format!("{base}/webhooks/contentstack"))
        .header("content-type", "application/json")
        .header("x-contentstack-request-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn webhook_attacks_are_refused_each_with_its_code() {
    let base = target().await;
    let body = webhook_body(Duration::from_secs(1), r#"{"entry":{"uid":"e1"}}"#);
    let signature = rsa_signature(PRIVATE_A, &body);

    let forged = rsa_signature(PRIVATE_B, &body);
    expect(
        refusal(deliver(&base, &body, &forged).await).await,
        401,
        "signature_mismatch",
        "forged",
    );

    let tampered = body.replace("e1", "e2");
    expect(
        refusal(deliver(&base, &tampered, &signature).await).await,
        401,
        "signature_mismatch",
        "tampered",
    );

    let stale = webhook_body(Duration::from_secs(3600), r#"{"entry":{"uid":"e1"}}"#);
    let stale_signature = rsa_signature(PRIVATE_A, &stale);
    expect(
        refusal(deliver(&base, &stale, &stale_signature).await).await,
        401,
        "timestamp_expired",
        "stale",
    );

    // Authentic, for a stack that is not this app's.
    let foreign = body.replace("\"blt1\"", "\"blt-foreign\"");
    let foreign_signature = rsa_signature(PRIVATE_A, &foreign);
    expect(
        refusal(deliver(&base, &foreign, &foreign_signature).await).await,
        403,
        "stack_not_allowed",
        "a foreign stack",
    );

    // Replayed: handled once; the same bytes again, and Contentstack's retry signed afresh,
    // are acknowledged without running the handler again.
    let first = deliver(&base, &body, &signature).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), "handled");
    for (form, signature) in [
        ("replayed as captured", signature.clone()),
        ("re-signed retry", rsa_signature(PRIVATE_A, &body)),
    ] {
        let again = deliver(&base, &body, &signature).await;
        assert_eq!(again.status(), 200, "{form}");
        assert_eq!(again.headers()[REPLAY_HEADER], "duplicate", "{form}");
        assert_eq!(
            again.text().await.unwrap(),
            r#"{"status":"duplicate"}"#,
            "{form}"
        );
    }
}

// Contentful

async fn contentful(
    base: &str,
    target: &str,
    headers: &[(String, String)],
    body: &str,
) -> reqwest::Response {
    let mut request = client()
        .post(format!("{base}{target}"))
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn contentful_attacks_are_refused_each_with_its_code() {
    let base = target().await;
    // An unsigned query tail: the toolkit signs up to a second `?`; the rest must not reach
    // the handler.
    let headers = contentful_headers(
        SECRET,
        "POST",
        "/contentful?a=1?admin=true",
        b"{}",
        &Context::default(),
    );
    expect(
        refusal(contentful(&base, "/contentful?a=1?admin=true", &headers, "{}").await).await,
        401,
        "target_unsigned",
        "an unsigned query tail",
    );

    // A signed-header list longer than any signer sends: refused before any matching.
    let mut long = contentful_headers(SECRET, "POST", "/contentful", b"{}", &Context::default());
    let names: Vec<String> = (0..65).map(|i| format!("x-h{i}")).collect();
    long.retain(|(name, _)| name != "x-contentful-signed-headers");
    long.push(("x-contentful-signed-headers".into(), names.join(",")));
    expect(
        refusal(contentful(&base, "/contentful", &long, "{}").await).await,
        401,
        "signed_headers_too_many",
        "a long signed-header list",
    );

    // 100,000 names: the head is over hyper's limit, refused before any layer.
    let names: Vec<String> = (0..100_000).map(|i| format!("x-h{i}")).collect();
    let status = match client()
        .post(format!("{base}/contentful"))
        .header(
            "x-contentful-signed-headers",
            HeaderValue::from_str(&names.join(",")).unwrap(),
        )
        .body("{}")
        .send()
        .await
    {
        Ok(response) => response.status().as_u16(),
        Err(_) => 431, // The server may close the connection as it answers.
    };
    assert_eq!(status, 431, "100,000 signed-header names");

    // A request replayed as captured: acknowledged, not handled again.
    let headers = contentful_headers(
        SECRET,
        "POST",
        "/contentful",
        b"{\"n\":1}",
        &Context::default(),
    );
    let first = contentful(&base, "/contentful", &headers, "{\"n\":1}").await;
    assert_eq!(first.text().await.unwrap(), "handled");
    let again = contentful(&base, "/contentful", &headers, "{\"n\":1}").await;
    assert_eq!(
        again.headers()[REPLAY_HEADER],
        "duplicate",
        "a replayed Contentful request"
    );
}

// The network and the transport

#[tokio::test]
async fn address_and_credential_attacks_are_refused_each_with_its_code() {
    let base = target().await;
    // A client's own X-Forwarded-For, from a peer that is no trusted proxy: ignored.
    let spoofed = client()
        .get(format!("{base}/ip/direct"))
        .header("x-forwarded-for", "52.35.1.58")
        .send()
        .await
        .unwrap();
    expect(
        refusal(spoofed).await,
        403,
        "ip_not_allowed",
        "a spoofed X-Forwarded-For",
    );

    // A trusted proxy's chain that cannot be read: refused, not taken for the proxy itself.
    let unreadable = client()
        .get(format!("{base}/ip/proxied"))
        .header(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"52.35.1.58\xff").unwrap(),
        )
        .send()
        .await
        .unwrap();
    expect(
        refusal(unreadable).await,
        400,
        "forwarding_unreadable",
        "an unreadable X-Forwarded-For",
    );

    for (attack, password) in [
        ("a wrong Basic password", "guess"),
        ("an empty Basic password", ""),
    ] {
        let response = client()
            .get(format!("{base}/basic"))
            .basic_auth("hook", Some(password))
            .send()
            .await
            .unwrap();
        expect(refusal(response).await, 401, "basic_auth_mismatch", attack);
    }
}

#[tokio::test]
async fn transport_attacks_are_refused_each_with_its_code() {
    let base = target().await;
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let body = webhook_body(Duration::from_secs(1), r#"{"entry":{"uid":"big"}}"#);
    let signature = rsa_signature(PRIVATE_A, &body);

    // Giant headers: hyper refuses the head (431) before any layer.
    let giant = client()
        .post(format!("{base}/webhooks/contentstack"))
        .header("x-giant", "a".repeat(512 * 1024))
        .body("{}")
        .send()
        .await;
    assert!(
        giant.is_err() || giant.unwrap().status() == 431,
        "giant headers"
    );

    // A declared length over the limit: 413 before a byte of the body is read.
    let head = format!(
        "POST /webhooks/contentstack HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Contentstack-Request-Signature: {signature}\r\nContent-Length: {}\r\n\r\n",
        10 * 1024 * 1024
    );
    let status = raw_status(addr, &head, &[], Duration::ZERO).await;
    assert!(
        status.starts_with("HTTP/1.1 413"),
        "an oversize declared body: {status}"
    );

    // A chunked body that grows past the limit: 413 once it does.
    let head = format!(
        "POST /webhooks/contentstack HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Contentstack-Request-Signature: {signature}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "a".repeat(16 * 1024));
    let chunks: Vec<&[u8]> = (0..8).map(|_| chunk.as_bytes()).collect();
    let status = raw_status(addr, &head, &chunks, Duration::from_millis(10)).await;
    assert!(
        status.starts_with("HTTP/1.1 413"),
        "an oversize chunked body: {status}"
    );

    // A slow body: 408 once the read timeout passes.
    let head = format!(
        "POST /webhooks/contentstack HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Contentstack-Request-Signature: {signature}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let status = raw_status(
        addr,
        &head,
        &[&body.as_bytes()[..10]],
        Duration::from_secs(2),
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 408"), "a slow body: {status}");
}
