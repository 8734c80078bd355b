//! Rejections are logged with their reason and the client address, never with a secret; the
//! headers that carry secrets are marked sensitive for tracing layers that print headers.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use countersign::BasicAuthLayer;
use countersign::credentials::BasicAuth;
use http::{HeaderMap, Request};
use tower::ServiceExt as _;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What this thread logs from now until the guard drops.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

fn request(authorization: &str) -> Request<Body> {
    let mut request = Request::get("/")
        .header("authorization", authorization)
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([198, 51, 100, 23], 4711))));
    request
}

#[tokio::test(flavor = "current_thread")]
async fn a_rejection_is_logged_with_reason_and_client_but_no_secret() {
    let (captured, _guard) = capture();

    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(BasicAuthLayer::new(
            BasicAuth::new(["hook:right-password"]).unwrap(),
        ));
    // base64("hook:wrong-password")
    let response = app
        .oneshot(request("Basic aG9vazp3cm9uZy1wYXNzd29yZA=="))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("countersign"), "{log}");
    assert!(log.contains("basic_auth_mismatch"), "{log}");
    assert!(log.contains("198.51.100.23"), "{log}");
    assert!(log.contains("WARN"), "{log}");
    assert!(
        !log.contains("aG9vazp3cm9uZy1wYXNzd29yZA") && !log.contains("password"),
        "{log}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_app_token_never_reaches_the_log() {
    use countersign::contentstack::session::{AppTokenLayer, SessionKey, Sessions};
    use countersign::contentstack::{AppTokenVerifier, SigningKey, StaticKeys, mint_app_token};

    let (captured, _guard) = capture();

    let keys_b =
        include_str!("../../../countersign-core/tests/data/keys/contentstack-b.public.pem");
    let signer = SigningKey::from_pem(include_str!(
        "../../../countersign-core/tests/data/keys/contentstack-a.private.pem"
    ))
    .unwrap();
    let claims = serde_json::json!({"app_uid": "a", "installation_uid": "i", "organization_uid": "o", "user_uid": "u"});
    let token = mint_app_token(
        &signer,
        &claims,
        std::time::SystemTime::now(),
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let sessions = Sessions::new([SessionKey::new([7u8; 32]).unwrap()]);
    let app = Router::new()
        .route("/ui", get(|| async { "page" }))
        .layer(AppTokenLayer::new(
            AppTokenVerifier::new(),
            StaticKeys::parse(keys_b).unwrap(),
            sessions,
        ));
    let request = Request::get(format!("/ui?app-token={token}"))
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 401);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("app_token_signature_mismatch"), "{log}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !log.contains(signature) && !log.contains(&token[..30]),
        "{log}"
    );
}

#[tokio::test]
async fn secret_headers_reach_the_handler_marked_sensitive() {
    let app =
        Router::new()
            .route(
                "/",
                get(|headers: HeaderMap| async move {
                    headers["authorization"].is_sensitive().to_string()
                }),
            )
            .layer(BasicAuthLayer::new(BasicAuth::new(["u:p"]).unwrap()));
    let response = app.oneshot(request("Basic dTpw")).await.unwrap();
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(body, "true");
}

#[tokio::test]
async fn required_custom_headers_and_the_csrf_header_reach_the_handler_marked_sensitive() {
    use countersign::RequiredHeadersLayer;
    use countersign::credentials::RequiredHeaders;
    let app = Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move {
                format!(
                    "{} {}",
                    headers["x-hook-token"].is_sensitive(),
                    headers["x-csrf-token"].is_sensitive()
                )
            }),
        )
        .layer(RequiredHeadersLayer::new(
            RequiredHeaders::new()
                .with_header("X-Hook-Token", ["s3cret"])
                .unwrap(),
        ));
    let request = Request::get("/")
        .header("x-hook-token", "s3cret")
        .header("x-csrf-token", "csrf")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    // The custom header by this layer; the CSRF header, one of SENSITIVE_HEADERS, by every
    // layer (both used to reach a header-printing trace in clear).
    assert_eq!(body, "true true");
}

#[test]
fn session_tokens_never_print() {
    let token = countersign::contentstack::session::SessionToken {
        token: "eyJhbGciOiJIUzI1NiJ9.session".to_owned(),
        csrf_token: "csrf-secret-value".to_owned(),
    };
    let printed = format!("{token:?}");
    assert!(!printed.contains("eyJ"), "{printed}");
    assert!(!printed.contains("csrf-secret-value"), "{printed}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_delivery_for_a_stack_with_no_secret_here_is_a_mismatch_whose_log_names_the_stack() {
    use countersign::ContentstackWebhookLayer;
    use countersign::contentstack::{WebhookBody, WebhookVerifier};
    use countersign::testing::TestKit;

    let (captured, _guard) = capture();

    // The receiver holds one secret, bound to blt-ours; the sender signs for blt-theirs.
    let kit = TestKit::new();
    let verifier =
        WebhookVerifier::new().with_stack_hmac_secret("blt-ours", kit.contentstack_hmac_secret());
    let app = Router::new()
        .route("/hook", axum::routing::post(|| async { "handled" }))
        .layer(ContentstackWebhookLayer::hmac(verifier).unwrap());
    // The status and the body of the answer to `request`.
    let answer = |request: Request<Body>| {
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let theirs = WebhookBody::new("entry", "publish").with_api_key("blt-theirs");
    let (status, body) = answer(kit.contentstack_hmac_webhook("/hook", &theirs)).await;
    assert_eq!(status, 401);
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    // The answer is the one a wrong secret gets: it tells an outsider nothing about which
    // stacks have a secret here.
    assert_eq!(problem["code"], "signature_mismatch");
    assert!(!body.contains("blt-"), "{problem}");
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains(r#"no HMAC secret is bound to stack \"blt-theirs\""#)
            || log.contains(r#"no HMAC secret is bound to stack "blt-theirs""#),
        "{log}"
    );
    assert!(
        log.contains("1 secret(s) are bound to other stacks"),
        "{log}"
    );

    // Its own stack's delivery verifies; an RSA-signed one is refused as a method not set up.
    let ours = WebhookBody::new("entry", "publish").with_api_key("blt-ours");
    let (status, _) = answer(kit.contentstack_hmac_webhook("/hook", &ours)).await;
    assert_eq!(status, 200);
    let (status, body) = answer(kit.contentstack_webhook("/hook", &ours)).await;
    assert_eq!(status, 401);
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "signature_method_not_configured");
}
