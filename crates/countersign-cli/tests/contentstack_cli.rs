//! `countersign contentstack ...`, run as a binary, against the contract in
//! `shared/spec/cli.md`.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

const DATA: &str = "../countersign-core/tests/data";

fn data(path: &str) -> PathBuf {
    PathBuf::from(DATA).join(path)
}

fn key(name: &str) -> String {
    data(&format!("keys/{name}")).to_str().unwrap().to_owned()
}

fn vectors() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data("contentstack-vectors.json")).unwrap())
        .unwrap()
}

fn vector<'a>(v: &'a Value, section: &str, name: &str) -> &'a Value {
    v[section]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

fn countersign(args: &[&str]) -> Output {
    Command::cargo_bin("countersign")
        .unwrap()
        .env_remove("COUNTERSIGN_CONTENTSTACK_HMAC_SECRET")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const BODY: &str = r#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","api_key":"blt1","event":"publish","data":{}}"#;
const SOON: &str = "2024-07-25T08:48:50Z";

#[test]
fn sign_then_verify_with_either_salt_length() {
    for (salt, reported) in [("digest", "digest"), ("max", "max")] {
        let signed = countersign(&[
            "contentstack",
            "sign",
            "--private-key",
            &key("contentstack-a.private.pem"),
            "--body",
            BODY,
            "--salt-length",
            salt,
        ]);
        assert!(signed.status.success(), "{}", stderr(&signed));
        let signature = stdout(&signed).trim().to_owned();
        assert!(signature.starts_with("v1="));
        for public in [
            "contentstack-a.public.pem",
            "contentstack-a.spki.pem",
            "contentstack-a.public-keys.json",
        ] {
            let verified = countersign(&[
                "contentstack",
                "verify",
                "--public-key",
                &key(public),
                "--signature",
                &signature,
                "--body",
                BODY,
                "--now",
                SOON,
            ]);
            assert_eq!(
                verified.status.code(),
                Some(0),
                "{public}: {}",
                stderr(&verified)
            );
            let report: Value = serde_json::from_str(&stdout(&verified)).unwrap();
            assert_eq!(report["salt_length"], reported);
            assert_eq!(report["event"], "publish");
            assert_eq!(report["reencoded"], false);
        }
    }
}

#[test]
fn verify_accepts_what_node_signed() {
    let v = vectors();
    let case = vector(&v, "rsa", "salt-max");
    let output = countersign(&[
        "contentstack",
        "verify",
        "--public-key",
        &key("contentstack-a.public.pem"),
        "--signature",
        case["header"].as_str().unwrap(),
        "--body",
        case["body"].as_str().unwrap(),
        "--now",
        SOON,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn verify_rejects_another_keys_signature_with_exit_1() {
    let v = vectors();
    let case = vector(&v, "rsa", "other-key");
    let output = countersign(&[
        "contentstack",
        "verify",
        "--public-key",
        &key("contentstack-a.public.pem"),
        "--signature",
        case["header"].as_str().unwrap(),
        "--body",
        case["body"].as_str().unwrap(),
        "--now",
        SOON,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("signature_mismatch: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn verify_checks_triggered_at_against_the_clock_and_tolerance() {
    let v = vectors();
    let case = vector(&v, "rsa", "salt-32");
    let public_key = key("contentstack-a.public.pem");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "contentstack",
            "verify",
            "--public-key",
            &public_key,
            "--signature",
            case["header"].as_str().unwrap(),
            "--body",
            case["body"].as_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        countersign(&args)
    };
    let today = run(&[]);
    assert_eq!(today.status.code(), Some(1));
    assert!(stderr(&today).starts_with("timestamp_expired: "));
    assert_eq!(
        run(&["--now", "2024-07-25T08:52:00Z"]).status.code(),
        Some(0)
    );
    assert_eq!(
        run(&["--now", "2024-07-25T08:52:00Z", "--tolerance", "60"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn json_fallback_is_a_flag() {
    let v = vectors();
    let case = vector(&v, "rsa", "fallback-pretty-printed");
    let base = [
        "contentstack",
        "verify",
        "--public-key",
        &key("contentstack-a.public.pem"),
        "--signature",
        case["header"].as_str().unwrap(),
        "--body",
        case["body"].as_str().unwrap(),
        "--now",
        SOON,
    ];
    assert_eq!(countersign(&base).status.code(), Some(1));
    let mut with = base.to_vec();
    with.push("--json-fallback");
    let output = countersign(&with);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["reencoded"], true);
}

#[test]
fn hmac_sign_then_verify_with_rotation() {
    let signed = countersign(&[
        "contentstack",
        "hmac-sign",
        "--secret",
        "new-secret",
        "--body",
        BODY,
        "--timestamp",
        "1721897326",
    ]);
    assert!(signed.status.success(), "{}", stderr(&signed));
    let signature = stdout(&signed).trim().to_owned();
    assert!(signature.starts_with("t=1721897326,v1="));
    let output = countersign(&[
        "contentstack",
        "hmac-verify",
        "--secret",
        "old-secret",
        "--secret",
        "new-secret",
        "--signature",
        &signature,
        "--body",
        BODY,
        "--now",
        SOON,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["method"], "hmac");
    assert_eq!(report["secret_index"], 1);

    let wrong = countersign(&[
        "contentstack",
        "hmac-verify",
        "--secret",
        "old-secret",
        "--signature",
        &signature,
        "--body",
        BODY,
        "--now",
        SOON,
    ]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).starts_with("signature_mismatch: "));
}

#[test]
fn hmac_secrets_come_from_the_environment() {
    let v = vectors();
    let case = vector(&v, "hmac", "rotation-two-v1-new-secret");
    let output = Command::cargo_bin("countersign")
        .unwrap()
        .env(
            "COUNTERSIGN_CONTENTSTACK_HMAC_SECRET",
            "unrelated,new-secret-abcdefghij",
        )
        .args([
            "contentstack",
            "hmac-verify",
            "--signature",
            case["header"].as_str().unwrap(),
        ])
        .args(["--body", case["body"].as_str().unwrap(), "--now", SOON])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn app_token_mint_then_verify_prints_the_claims() {
    let claims = r#"{"app_uid":"a","installation_uid":"i","organization_uid":"o","user_uid":"u","stack_api_key":"blt1"}"#;
    let minted = countersign(&[
        "contentstack",
        "app-token",
        "mint",
        "--private-key",
        &key("contentstack-a.pkcs1-private.pem"),
        "--claims",
        claims,
        "--expires-in",
        "120",
    ]);
    assert!(minted.status.success(), "{}", stderr(&minted));
    let token = stdout(&minted).trim().to_owned();
    let verified = countersign(&[
        "contentstack",
        "app-token",
        "verify",
        "--public-key",
        &key("contentstack-a.public-keys.json"),
        "--token",
        &token,
    ]);
    assert_eq!(verified.status.code(), Some(0), "{}", stderr(&verified));
    let printed: Value = serde_json::from_str(&stdout(&verified)).unwrap();
    assert_eq!(printed["stack_api_key"], "blt1");
    assert_eq!(printed["user_uid"], "u");
    assert_eq!(stdout(&verified).lines().count(), 1);

    let other_key = countersign(&[
        "contentstack",
        "app-token",
        "verify",
        "--public-key",
        &key("contentstack-b.public.pem"),
        "--token",
        &token,
    ]);
    assert_eq!(other_key.status.code(), Some(1));
    assert!(stderr(&other_key).starts_with("app_token_signature_mismatch: "));
}

#[test]
fn app_token_verify_rejects_node_made_bad_tokens_with_exit_1() {
    let v = vectors();
    let now = v["now_ms"].to_string();
    for (name, code) in [
        ("expired", "app_token_expired"),
        ("alg-none", "app_token_algorithm_not_allowed"),
        (
            "hs256-with-public-key-as-secret",
            "app_token_algorithm_not_allowed",
        ),
        ("tampered-payload", "app_token_signature_mismatch"),
    ] {
        let case = vector(&v, "app_tokens", name);
        let output = countersign(&[
            "contentstack",
            "app-token",
            "verify",
            "--public-key",
            &key("contentstack-a.public.pem"),
            "--token",
            case["token"].as_str().unwrap(),
            "--now",
            &now,
        ]);
        assert_eq!(output.status.code(), Some(1), "{name}");
        assert!(
            stderr(&output).starts_with(&format!("{code}: ")),
            "{name}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn bad_input_exits_2() {
    let missing = key("missing.pem");
    let cases: [&[&str]; 6] = [
        &[
            "contentstack",
            "sign",
            "--private-key",
            &missing,
            "--body",
            "{}",
        ],
        &[
            "contentstack",
            "sign",
            "--private-key",
            &key("contentstack-a.public.pem"),
            "--body",
            "{}",
        ],
        &[
            "contentstack",
            "verify",
            "--public-key",
            &key("contentstack-a.private.pem"),
            "--signature",
            "v1=x",
            "--body",
            "{}",
        ],
        &["contentstack", "hmac-sign", "--secret", "", "--body", "{}"],
        &[
            "contentstack",
            "app-token",
            "mint",
            "--private-key",
            &key("contentstack-a.private.pem"),
            "--claims",
            "not json",
        ],
        &[
            "contentstack",
            "sign",
            "--private-key",
            &key("contentstack-a.private.pem"),
            "--salt-length",
            "64",
        ],
    ];
    for args in cases {
        let output = countersign(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn every_contentstack_command_has_help_with_an_example() {
    for args in [
        &["contentstack", "sign"][..],
        &["contentstack", "verify"],
        &["contentstack", "hmac-sign"],
        &["contentstack", "hmac-verify"],
        &["contentstack", "app-token", "mint"],
        &["contentstack", "app-token", "verify"],
    ] {
        let mut args = args.to_vec();
        args.push("--help");
        let output = countersign(&args);
        assert!(output.status.success());
        assert!(stdout(&output).contains("Example:"), "{args:?}");
    }
}

/// A server that verifies Contentstack webhooks with key `a` and answers 200 `handled`.
async fn webhook_server() -> std::net::SocketAddr {
    use axum::routing::post;
    use countersign::ContentstackWebhookLayer;
    use countersign::contentstack::{StaticKeys, WebhookVerifier};
    let keys = StaticKeys::from_file(key("contentstack-a.public.pem")).unwrap();
    let app = axum::Router::new().route(
        "/webhooks",
        post(|| async { "handled" })
            .layer(ContentstackWebhookLayer::new(WebhookVerifier::new(), keys)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_signed_as_http_text_is_accepted_as_sent() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = webhook_server().await;
    let url = format!("http://{address}/webhooks");
    let private = key("contentstack-a.private.pem");
    let args = [
        "contentstack",
        "sign",
        "--private-key",
        &private,
        "--module",
        "entry",
        "--event",
        "publish",
        "--api-key",
        "blt1",
        "--body",
        r#"{"entry":{"uid":"e1"}}"#,
        "--format",
        "http",
        "--url",
        &url,
    ];
    let output = countersign(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let request = stdout(&output);
    assert!(
        request.starts_with("POST /webhooks HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("\"triggered_at\":\""), "{request}");
    // Sent byte for byte, it verifies.
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let wire = request
        .trim_end_matches('\n')
        .replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    stream.write_all(wire.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("handled"), "{answer}");
}

#[test]
fn sign_as_curl_prints_a_command_that_sends_the_signed_envelope() {
    let private = key("contentstack-a.private.pem");
    let args = [
        "contentstack",
        "sign",
        "--private-key",
        &private,
        "--module",
        "entry",
        "--event",
        "publish",
        "--format",
        "curl",
        "--url",
        "http://127.0.0.1:3000/webhooks/contentstack",
    ];
    let output = countersign(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let line = stdout(&output);
    assert!(
        line.starts_with("curl -sS -X POST 'http://127.0.0.1:3000/webhooks/contentstack'"),
        "{line}"
    );
    assert!(
        line.contains(" -H 'x-contentstack-request-signature: v1="),
        "{line}"
    );
    assert!(
        line.contains(" -H 'Content-Type: application/json'"),
        "{line}"
    );
    assert!(
        line.contains(" --data-binary '{\"triggered_at\":\""),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "one line to paste");
}

#[test]
fn the_help_says_what_a_body_must_be_and_what_each_option_becomes() {
    let sign = stdout(&countersign(&["contentstack", "sign", "--help"]));
    for needed in [
        "triggered_at is RFC 3339 in UTC with milliseconds and Z",
        "--module and --event build it",
        "the envelope's data",
        "--format curl",
    ] {
        assert!(
            sign.contains(needed),
            "contentstack sign --help lacks {needed:?}:\n{sign}"
        );
    }
    let send = stdout(&countersign(&["send", "contentstack", "--help"]));
    assert!(send.contains("The envelope's data, JSON"), "{send}");
    assert!(!send.contains("The body, as text"), "{send}");
}

#[test]
fn a_body_a_verifier_would_refuse_is_signed_with_a_warning_and_t_in_milliseconds_is_refused() {
    let private = key("contentstack-a.private.pem");
    let output = countersign(&[
        "contentstack",
        "sign",
        "--private-key",
        &private,
        "--body",
        r#"{"module":"entry"}"#,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("timestamp_missing"),
        "{}",
        stderr(&output)
    );
    let output = countersign(&[
        "contentstack",
        "hmac-sign",
        "--secret",
        "s",
        "--body",
        "{}",
        "--timestamp",
        "1796217861000",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("looks like milliseconds"),
        "{}",
        stderr(&output)
    );
}
