//! Signing what is sent: the envelope, curl and HTTP text

use super::*;

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

/// A server that takes only HMAC-signed webhooks, with `secret` bound to stack `blt1`, and
/// answers 200 `handled`.
async fn hmac_server(secret: &str) -> std::net::SocketAddr {
    use axum::routing::post;
    use countersign::ContentstackWebhookLayer;
    use countersign::contentstack::{HmacSecret, WebhookVerifier};
    let verifier =
        WebhookVerifier::new().with_stack_hmac_secret("blt1", HmacSecret::new(secret).unwrap());
    let app = axum::Router::new().route(
        "/webhooks/hmac",
        post(|| async { "handled" }).layer(ContentstackWebhookLayer::hmac(verifier).unwrap()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// Runs a printed command line with `sh`: what it printed.
async fn run_printed(line: String) -> String {
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_sign_as_curl_prints_a_command_an_hmac_receiver_accepts_as_printed() {
    let address = hmac_server("the webhook's secret").await;
    let url = format!("http://{address}/webhooks/hmac");
    let envelope = |api_key: Option<&'static str>| {
        let mut args = vec![
            "contentstack",
            "hmac-sign",
            "--secret",
            "the webhook's secret",
            "--module",
            "entry",
            "--event",
            "publish",
            "--body",
            r#"{"entry":{"uid":"e1"}}"#,
            "--format",
            "curl",
        ];
        args.extend(api_key.map(|key| ["--api-key", key]).into_iter().flatten());
        args.extend(["--url", url.as_str()]);
        countersign(&args)
    };
    let output = envelope(Some("blt1"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let line = stdout(&output);
    assert!(
        line.contains(" -H 'x-contentstack-hmac-signature: t="),
        "{line}"
    );
    assert!(stderr(&output).is_empty(), "{}", stderr(&output));
    assert_eq!(run_printed(line).await, "handled");

    // Without --api-key: the placeholder stack, said on stderr, and refused by a receiver
    // whose secret is bound to its own stack.
    let output = envelope(None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("placeholder blt0000000000000000"),
        "{}",
        stderr(&output)
    );
    let answer = run_printed(stdout(&output)).await;
    assert!(answer.contains("signature_mismatch"), "{answer}");
}

#[test]
fn a_body_text_cannot_carry_is_refused_and_an_at_sign_is_sent_not_read() {
    let binary = [
        "contentstack",
        "hmac-sign",
        "--secret",
        "s",
        "--body",
        "@/etc/passwd",
    ];
    let output = countersign(&[&binary[..], &["--format", "curl"]].concat());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(" --data-raw '@/etc/passwd'"),
        "{}",
        stdout(&output)
    );
    let file = std::env::temp_dir().join(format!("countersign-nul-{}", std::process::id()));
    std::fs::write(&file, b"{\"a\":\"\0\"}").unwrap();
    let file = file.to_string_lossy().into_owned();
    let output = countersign(&[
        "contentstack",
        "hmac-sign",
        "--secret",
        "s",
        "--body-file",
        &file,
        "--format",
        "curl",
    ]);
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("--format headers"),
        "{}",
        stderr(&output)
    );
    // Nor can an escape sequence, which a terminal would act on, for curl or as HTTP text.
    std::fs::write(&file, b"{\"a\":\"\x1b[2J\"}").unwrap();
    for format in ["curl", "http"] {
        let output = countersign(&[
            "contentstack",
            "hmac-sign",
            "--secret",
            "s",
            "--body-file",
            &file,
            "--format",
            format,
        ]);
        assert_ne!(output.status.code(), Some(0), "{format}");
        assert!(!stdout(&output).contains('\x1b'), "{format}");
    }
    let _ = std::fs::remove_file(&file);
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
        line.starts_with("curl -sS -X POST --url 'http://127.0.0.1:3000/webhooks/contentstack'"),
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
    assert!(line.contains(" --data-raw '{\"triggered_at\":\""), "{line}");
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
