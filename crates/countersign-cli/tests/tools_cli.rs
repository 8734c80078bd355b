//! `countersign keygen`, `contentful secret`, `send` and `inspect`, run as a binary: round
//! trips, a real local server built with the library, and one captured request per diagnosis.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use axum::Router;
use axum::routing::post;
use countersign::contentful::{Context, RequestToSign, RequestVerifier, SigningSecret, sign};
use countersign::contentstack::{SaltLength, SigningKey, StaticKeys, WebhookVerifier};
use countersign::{
    ContentfulRequest, ContentfulRequestLayer, ContentstackWebhook, ContentstackWebhookLayer,
};
use serde_json::Value;

const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const KEYS: &str = "../countersign-core/tests/data/keys";

fn countersign(args: &[&str]) -> Output {
    Command::cargo_bin("countersign")
        .unwrap()
        .env_remove("COUNTERSIGN_CONTENTFUL_SECRET")
        .env_remove("COUNTERSIGN_CONTENTSTACK_HMAC_SECRET")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("countersign-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn keygen_then_sign_then_verify() {
    let dir = temp_dir("keygen");
    let out = dir.join("keys");
    let made = countersign(&["keygen", "--out", path(&out)]);
    assert!(made.status.success(), "{}", stderr(&made));
    let public = std::fs::read_to_string(out.join("public.pem")).unwrap();
    assert!(public.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("public-keys.json")).unwrap())
            .unwrap();
    assert_eq!(json["signing-key"], public.as_str());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(out.join("private.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key is readable by its owner only"
        );
    }
    let body = r#"{"triggered_at":"2024-07-25T08:48:46.861Z","event":"publish"}"#;
    let signed = countersign(&[
        "contentstack",
        "sign",
        "--private-key",
        path(&out.join("private.pem")),
        "--body",
        body,
    ]);
    let signature = stdout(&signed).trim().to_owned();
    for public in ["public.pem", "public-keys.json"] {
        let verified = countersign(&[
            "contentstack",
            "verify",
            "--public-key",
            path(&out.join(public)),
            "--signature",
            &signature,
            "--body",
            body,
            "--now",
            "2024-07-25T08:48:50Z",
        ]);
        assert_eq!(verified.status.code(), Some(0), "{}", stderr(&verified));
    }
    // It will not overwrite a key pair silently.
    assert_eq!(
        countersign(&["keygen", "--out", path(&out)]).status.code(),
        Some(2)
    );
    assert_eq!(
        countersign(&["keygen", "--out", path(&out), "--force"])
            .status
            .code(),
        Some(0)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn contentful_secret_prints_a_secret_that_signs_and_verifies() {
    let first = stdout(&countersign(&["contentful", "secret"]))
        .trim()
        .to_owned();
    let second = stdout(&countersign(&["contentful", "secret"]))
        .trim()
        .to_owned();
    assert_eq!(first.len(), 64);
    assert!(
        first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=_-".contains(c))
    );
    assert_ne!(first, second);
    let signed = countersign(&[
        "contentful",
        "sign",
        "--secret",
        &first,
        "--method",
        "GET",
        "--path",
        "/x",
        "--timestamp",
        "1700000000000",
    ]);
    let headers: Value = serde_json::from_str(&stdout(&signed)).unwrap();
    let mut verify = vec![
        "contentful",
        "verify",
        "--secret",
        &first,
        "--method",
        "GET",
        "--path",
        "/x",
        "--now",
        "1700000001000",
    ];
    let pairs: Vec<String> = headers
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, v)| format!("{n}: {}", v.as_str().unwrap()))
        .collect();
    for pair in &pairs {
        verify.extend(["-H", pair]);
    }
    assert_eq!(countersign(&verify).status.code(), Some(0));
}

/// A server built with the library: a Contentstack webhook route and a Contentful route.
fn start_server() -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let public = std::fs::read_to_string(format!("{KEYS}/contentstack-a.public.pem")).unwrap();
    let addr = runtime.block_on(async move {
        let app = Router::new()
            .route(
                "/webhooks/contentstack",
                post(|webhook: ContentstackWebhook| async move {
                    format!("accepted {:?}", webhook.event().map(|e| e.to_string()))
                })
                .layer(ContentstackWebhookLayer::new(
                    WebhookVerifier::new(),
                    StaticKeys::parse(&public).unwrap(),
                )),
            )
            .route(
                "/contentful/hook",
                post(|request: ContentfulRequest| async move {
                    format!("accepted space {:?}", request.space_id())
                })
                .layer(ContentfulRequestLayer::new(RequestVerifier::new(
                    SigningSecret::new(SECRET).unwrap(),
                ))),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    (format!("http://{addr}"), runtime)
}

#[test]
fn send_posts_signed_requests_a_real_server_accepts() {
    let (base, _runtime) = start_server();
    let sent = countersign(&[
        "send",
        "contentstack",
        &format!("{base}/webhooks/contentstack"),
        "--private-key",
        &format!("{KEYS}/contentstack-a.private.pem"),
        "--event",
        "unpublish",
        "--body",
        r#"{"entry":{"uid":"b1"}}"#,
    ]);
    assert_eq!(
        sent.status.code(),
        Some(0),
        "{}{}",
        stdout(&sent),
        stderr(&sent)
    );
    assert!(stdout(&sent).starts_with("HTTP 200 OK"));
    assert!(stdout(&sent).contains("accepted Some(\"unpublish\")"));

    let sent = countersign(&[
        "send",
        "contentful",
        &format!("{base}/contentful/hook?x=1"),
        "--secret",
        SECRET,
        "--space-id",
        "sp1",
        "--body",
        "{}",
    ]);
    assert_eq!(
        sent.status.code(),
        Some(0),
        "{}{}",
        stdout(&sent),
        stderr(&sent)
    );
    assert!(stdout(&sent).contains("accepted space Some(\"sp1\")"));
}

#[test]
fn send_exits_1_on_a_non_2xx_answer_and_2_when_nothing_answers() {
    let (base, _runtime) = start_server();
    let refused = countersign(&[
        "send",
        "contentstack",
        &format!("{base}/webhooks/contentstack"),
        "--private-key",
        &format!("{KEYS}/contentstack-b.private.pem"),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stdout(&refused).contains("HTTP 401"));
    assert!(stdout(&refused).contains("signature_mismatch"));
    assert!(stderr(&refused).starts_with("request_refused: "));
    let wrong_secret = countersign(&[
        "send",
        "contentful",
        &format!("{base}/contentful/hook"),
        "--secret",
        OTHER,
    ]);
    assert_eq!(wrong_secret.status.code(), Some(1));
    let nobody = countersign(&[
        "send",
        "contentful",
        "http://127.0.0.1:9/x",
        "--secret",
        SECRET,
    ]);
    assert_eq!(nobody.status.code(), Some(2));
}

// inspect: one captured request per diagnosis.

fn capture(
    dir: &Path,
    name: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> PathBuf {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: backend.example\r\n").into_bytes();
    for (n, v) in headers {
        raw.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    raw.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    raw.extend_from_slice(body);
    let file = dir.join(name);
    std::fs::write(&file, raw).unwrap();
    file
}

fn contentful_signed(
    secret: &str,
    target: &str,
    body: &[u8],
    at: SystemTime,
) -> Vec<(String, String)> {
    let request = RequestToSign::new(http::Method::POST, target)
        .with_header("content-type", "application/json")
        .with_body(body);
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    headers.extend(
        sign(
            &SigningSecret::new(secret).unwrap(),
            &request,
            at,
            &Context::default(),
        )
        .unwrap()
        .iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned())),
    );
    headers
}

const NOW: &str = "1700000002000";

fn at_t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000)
}

fn inspect_contentful(file: &Path, secrets: &[&str], extra: &[&str]) -> Output {
    let mut args = vec!["inspect", "--request-file", path(file), "--now", NOW];
    for secret in secrets {
        args.extend(["--contentful-secret", secret]);
    }
    args.extend_from_slice(extra);
    countersign(&args)
}

fn inspect_contentstack(file: &Path) -> Output {
    let key = format!("{KEYS}/contentstack-a.public-keys.json");
    countersign(&[
        "inspect",
        "--request-file",
        path(file),
        "--contentstack-key",
        &key,
        "--now",
        NOW,
    ])
}

fn signing_key_a() -> SigningKey {
    SigningKey::from_pem(
        &std::fs::read_to_string(format!("{KEYS}/contentstack-a.private.pem")).unwrap(),
    )
    .unwrap()
}

#[test]
fn inspect_a_good_request_says_which_secret_matched() {
    let dir = temp_dir("inspect-good");
    let body = br#"{"a":1}"#;
    let file = capture(
        &dir,
        "good.http",
        "POST",
        "/hook",
        &contentful_signed(OTHER, "/hook", body, at_t0()),
        body,
    );
    let output = inspect_contentful(&file, &[SECRET, OTHER], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("matches secret #2 of 2"),
        "{}",
        stdout(&output)
    );
    assert!(
        stdout(&output).contains("signed 2.0 s old (TTL 30 s)"),
        "{}",
        stdout(&output)
    );
    let json = inspect_contentful(&file, &[SECRET, OTHER], &["--json"]);
    let report: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["verified"], true);
}

#[test]
fn inspect_names_a_path_prefix_the_proxy_stripped() {
    let dir = temp_dir("inspect-prefix");
    let body = b"{}";
    let mut headers = contentful_signed(SECRET, "/backend/hook", body, at_t0());
    headers.push(("X-Forwarded-Prefix".into(), "/backend".into()));
    let file = capture(&dir, "prefix.http", "POST", "/hook", &headers, body);
    let output = inspect_contentful(&file, &[SECRET], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output)
            .contains("verifies when the path prefix /backend is added: your proxy strips it"),
        "{}",
        stdout(&output)
    );
    assert!(stderr(&output).starts_with("signature_mismatch: "));
    // A common prefix is found without the header too.
    let headers = contentful_signed(SECRET, "/api/hook", body, at_t0());
    let file = capture(&dir, "common.http", "POST", "/hook", &headers, body);
    assert!(
        stdout(&inspect_contentful(&file, &[SECRET], &[])).contains("path prefix /api is added")
    );
}

#[test]
fn inspect_names_a_re_encoded_body() {
    let dir = temp_dir("inspect-json");
    let sent = br#"{"b":1,"a":[1,2]}"#;
    let received = b"{\n  \"b\": 1,\n  \"a\": [1, 2]\n}";
    let file = capture(
        &dir,
        "json.http",
        "POST",
        "/hook",
        &contentful_signed(SECRET, "/hook", sent, at_t0()),
        received,
    );
    let output = inspect_contentful(&file, &[SECRET], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("verifies only after JSON re-serialization"),
        "{}",
        stdout(&output)
    );

    // Contentstack: a framework that pretty-printed the webhook.
    let body = r#"{"triggered_at":"2023-11-14T22:13:20.000Z","event":"publish","data":{"x":1.5}}"#;
    let signature = signing_key_a()
        .sign_webhook(body.as_bytes(), SaltLength::Max)
        .unwrap();
    let pretty = body.replace(",\"", ",\n  \"");
    let headers = vec![(
        "X-Contentstack-Request-Signature".to_owned(),
        signature.clone(),
    )];
    let file = capture(
        &dir,
        "cs.http",
        "POST",
        "/webhooks/contentstack",
        &headers,
        pretty.as_bytes(),
    );
    let output = inspect_contentstack(&file);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("verifies only after JSON re-serialization"),
        "{}",
        stdout(&output)
    );

    // And the good one reports the salt length.
    let file = capture(
        &dir,
        "cs-good.http",
        "POST",
        "/webhooks/contentstack",
        &headers,
        body.as_bytes(),
    );
    let output = inspect_contentstack(&file);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("salt length max"),
        "{}",
        stdout(&output)
    );

    // It names the delivery: the id every retry of it has, however it was signed.
    let delivery_id = |text: &str| {
        let after = &text[text.find("delivery").unwrap()..];
        let id = &after[after.find(" id ").unwrap() + 4..][..64];
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
        id.to_owned()
    };
    let first = delivery_id(&stdout(&output));
    let resigned = signing_key_a()
        .sign_webhook(body.as_bytes(), SaltLength::Digest)
        .unwrap();
    assert_ne!(resigned, signature);
    let file = capture(
        &dir,
        "cs-resigned.http",
        "POST",
        "/webhooks/contentstack",
        &[("X-Contentstack-Request-Signature".to_owned(), resigned)],
        body.as_bytes(),
    );
    let output = inspect_contentstack(&file);
    assert_eq!(delivery_id(&stdout(&output)), first);
}

#[test]
fn inspect_names_a_query_added_after_signing() {
    let dir = temp_dir("inspect-query");
    let body = b"{}";
    let file = capture(
        &dir,
        "query.http",
        "POST",
        "/hook?tracking=1",
        &contentful_signed(SECRET, "/hook", body, at_t0()),
        body,
    );
    let output = inspect_contentful(&file, &[SECRET], &[]);
    assert!(
        stdout(&output).contains("verifies without the query string"),
        "{}",
        stdout(&output)
    );
    // The query the signer saw, left out by a proxy that kept it in X-Original-URI.
    let mut headers = contentful_signed(SECRET, "/hook?page=2", body, at_t0());
    headers.push(("X-Original-URI".into(), "/hook?page=2".into()));
    let file = capture(&dir, "left-out.http", "POST", "/hook", &headers, body);
    let output = inspect_contentful(&file, &[SECRET], &[]);
    assert!(
        stdout(&output).contains("verifies with the target in x-original-uri"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn inspect_reports_the_timestamps_age_against_the_ttl() {
    let dir = temp_dir("inspect-age");
    let body = b"{}";
    let old = at_t0() - Duration::from_secs(95);
    let file = capture(
        &dir,
        "old.http",
        "POST",
        "/hook",
        &contentful_signed(SECRET, "/hook", body, old),
        body,
    );
    let output = inspect_contentful(&file, &[SECRET], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains(
            "the signature is valid, but the request was signed 97.0 s old and the TTL is 30 s"
        ),
        "{}",
        stdout(&output)
    );
    assert!(stderr(&output).starts_with("timestamp_expired: "));
}

#[test]
fn inspect_says_when_the_secret_or_the_body_differs() {
    let dir = temp_dir("inspect-other");
    let body = b"{}";
    let file = capture(
        &dir,
        "other.http",
        "POST",
        "/hook",
        &contentful_signed(OTHER, "/hook", b"{\"x\":2}", at_t0()),
        body,
    );
    let output = inspect_contentful(&file, &[SECRET], &["--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["verified"], false);
    assert_eq!(report["code"], "signature_mismatch");
    assert!(
        report["likely_causes"][0]
            .as_str()
            .unwrap()
            .contains("different secret, or over a different request")
    );
}

#[test]
fn inspect_hmac_says_which_secret_matched() {
    let dir = temp_dir("inspect-hmac");
    let body = br#"{"triggered_at":"2023-11-14T22:13:20.000Z"}"#;
    let signed = countersign(&[
        "contentstack",
        "hmac-sign",
        "--secret",
        "new-one",
        "--body",
        std::str::from_utf8(body).unwrap(),
        "--timestamp",
        "1700000000",
    ]);
    let header = stdout(&signed).trim().to_owned();
    let file = capture(
        &dir,
        "hmac.http",
        "POST",
        "/hook",
        &[("x-contentstack-hmac-signature".into(), header)],
        body,
    );
    let output = countersign(&[
        "inspect",
        "--request-file",
        path(&file),
        "--contentstack-hmac-secret",
        "old-one",
        "--contentstack-hmac-secret",
        "new-one",
        "--now",
        NOW,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("HMAC, secret #2"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn inspect_input_errors_exit_2() {
    let dir = temp_dir("inspect-bad");
    let file = dir.join("not-http.txt");
    std::fs::write(&file, "hello").unwrap();
    assert_eq!(
        countersign(&[
            "inspect",
            "--request-file",
            path(&file),
            "--contentful-secret",
            SECRET
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        countersign(&["inspect", "--request-file", path(&dir.join("missing"))])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn every_command_has_help_with_an_example() {
    for args in [
        &["keygen"][..],
        &["contentful", "secret"],
        &["send", "contentstack"],
        &["send", "contentful"],
        &["inspect"],
    ] {
        let mut args = args.to_vec();
        args.push("--help");
        let output = countersign(&args);
        assert!(output.status.success(), "{args:?}");
        assert!(stdout(&output).contains("Example:"), "{args:?}");
    }
}

#[test]
fn inspect_of_a_request_with_too_many_header_names_exits_2_with_a_message() {
    let dir = temp_dir("too-many-headers");
    // 25,000 distinct names: more than a header map holds (it used to panic).
    let headers: Vec<(String, String)> = (0..25_000)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect();
    let file = capture(&dir, "many.http", "POST", "/hook", &headers, b"{}");
    let output = inspect_contentful(&file, &["a".repeat(64).as_str()], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("more header fields"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("panicked"));
}
