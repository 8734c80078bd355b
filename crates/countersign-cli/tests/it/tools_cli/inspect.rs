//! inspect: one captured request per diagnosis

use super::*;

pub(crate) fn capture(
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

pub(crate) fn inspect_contentful(file: &Path, secrets: &[&str], extra: &[&str]) -> Output {
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
