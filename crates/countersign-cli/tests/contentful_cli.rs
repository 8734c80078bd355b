//! `countersign contentful sign|verify`, run as a binary, against the contract in
//! `shared/spec/cli.md`.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use assert_cmd::Command;
use serde_json::Value;

const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn countersign() -> Command {
    let mut cmd = Command::cargo_bin("countersign").unwrap();
    cmd.env_remove("COUNTERSIGN_CONTENTFUL_SECRET");
    cmd
}

fn stdout_json(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `countersign contentful sign` of `POST /hook?x=1` with `extra` arguments.
fn sign(extra: &[&str]) -> std::process::Output {
    countersign()
        .args(["contentful", "sign", "--secret", SECRET])
        .args(["--method", "POST", "--path", "/hook?x=1"])
        .args(["--timestamp", "1700000000000", "--body", "{}"])
        .args(extra)
        .output()
        .unwrap()
}

/// Signs with the CLI and returns the headers it printed, as `-H` arguments.
fn signed_headers(extra: &[&str]) -> Vec<String> {
    let output = sign(extra);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout_json(&output)
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| format!("{name}: {}", value.as_str().unwrap()))
        .collect()
}

fn verify(headers: &[String], extra: &[&str]) -> std::process::Output {
    let mut cmd = countersign();
    cmd.args([
        "contentful",
        "verify",
        "--method",
        "POST",
        "--path",
        "/hook?x=1",
        "--body",
        "{}",
    ]);
    cmd.args(["--now", "1700000001000"]);
    for header in headers {
        cmd.args(["-H", header]);
    }
    cmd.args(extra).output().unwrap()
}

#[test]
fn sign_prints_exactly_the_toolkits_headers_for_every_vector() {
    let text =
        std::fs::read_to_string("../countersign-core/tests/data/contentful-vectors.json").unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    for v in file["vectors"].as_array().unwrap() {
        let mut cmd = countersign();
        cmd.args([
            "contentful",
            "sign",
            "--secret",
            v["secret"].as_str().unwrap(),
        ]);
        cmd.args(["--method", v["request"]["method"].as_str().unwrap()]);
        cmd.args(["--path", v["request"]["path"].as_str().unwrap()]);
        cmd.args(["--timestamp", &v["timestamp"].to_string()]);
        if let Some(headers) = v["request"]["headers"].as_object() {
            for (name, value) in headers {
                cmd.args(["-H", &format!("{name}:{}", value.as_str().unwrap())]);
            }
        }
        if let Some(body) = v["request"]["body"].as_str() {
            cmd.args(["--body", body]);
        }
        let flags = [
            ("spaceId", "--space-id"),
            ("envId", "--environment-id"),
            ("appId", "--app-id"),
            ("userId", "--user-id"),
            ("crn", "--crn"),
        ];
        for (key, flag) in flags {
            if let Some(value) = v["context"][key].as_str() {
                cmd.args([flag, value]);
            }
        }
        let output = cmd.output().unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            v["name"],
            stderr(&output)
        );
        assert_eq!(
            stdout_json(&output),
            v["expected_headers"],
            "vector {}",
            v["name"]
        );
        // One JSON object on one line.
        assert_eq!(output.stdout.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}

#[test]
fn sign_then_verify_exits_0_and_reports_the_context() {
    let headers = signed_headers(&["--space-id", "space-1", "--user-id", "user-1"]);
    let output = verify(&headers, &["--secret", SECRET]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = stdout_json(&output);
    assert_eq!(report["verified"], true);
    assert_eq!(report["kind"], "frontend", "a signed user id");
    assert_eq!(report["secret_index"], 0);
    assert_eq!(report["age_ms"], 1000);
    assert_eq!(report["signed_headers"]["x-contentful-space-id"], "space-1");
    assert_eq!(report["signed_headers"]["x-contentful-user-id"], "user-1");
}

#[test]
fn verify_with_several_secrets_says_which_matched() {
    let headers = signed_headers(&[]);
    let output = verify(&headers, &["--secret", OTHER, "--secret", SECRET]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout_json(&output)["secret_index"], 1);
    assert_eq!(stdout_json(&output)["kind"], "app", "no signed user id");
}

#[test]
fn verify_takes_secrets_from_the_environment() {
    let headers = signed_headers(&[]);
    let mut cmd = countersign();
    cmd.env("COUNTERSIGN_CONTENTFUL_SECRET", format!("{OTHER},{SECRET}"));
    cmd.args([
        "contentful",
        "verify",
        "--method",
        "POST",
        "--path",
        "/hook?x=1",
        "--body",
        "{}",
    ]);
    cmd.args(["--now", "1700000001000"]);
    for header in &headers {
        cmd.args(["-H", header]);
    }
    let output = cmd.output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn sign_takes_the_secret_from_the_environment() {
    let output = countersign()
        .env("COUNTERSIGN_CONTENTFUL_SECRET", SECRET)
        .args([
            "contentful",
            "sign",
            "--method",
            "GET",
            "--path",
            "/api/resources/1",
            "--timestamp",
            "1603379941037",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout_json(&output)["x-contentful-signature"],
        "3b21d63c31a2a92d38945394da0b1a2a0dc2d9bf13ef4dfd91b9f3fa1440b404"
    );
}

#[test]
fn a_wrong_secret_exits_1_with_the_reason_code() {
    let output = verify(&signed_headers(&[]), &["--secret", OTHER]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.starts_with("signature_mismatch: "), "{err}");
    assert_eq!(err.lines().count(), 1);
    assert!(!err.contains(OTHER));
}

#[test]
fn an_expired_request_exits_1() {
    let output = verify(
        &signed_headers(&[]),
        &["--secret", SECRET, "--now", "2023-11-14T22:13:50Z"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).starts_with("timestamp_expired: "));
    let no_ttl = verify(
        &signed_headers(&[]),
        &[
            "--secret",
            SECRET,
            "--now",
            "2023-11-14T22:13:50Z",
            "--ttl",
            "0",
        ],
    );
    assert_eq!(no_ttl.status.code(), Some(0));
}

#[test]
fn a_missing_signature_exits_1() {
    let output = verify(&[], &["--secret", SECRET]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).starts_with("signature_missing: "));
}

#[test]
fn a_different_body_exits_1() {
    let mut cmd = countersign();
    cmd.args([
        "contentful",
        "verify",
        "--secret",
        SECRET,
        "--method",
        "POST",
        "--path",
        "/hook?x=1",
    ]);
    cmd.args(["--body", "{ }", "--now", "1700000001000"]);
    for header in signed_headers(&[]) {
        cmd.args(["-H", &header]);
    }
    assert_eq!(cmd.output().unwrap().status.code(), Some(1));
}

#[test]
fn body_file_is_used_byte_for_byte() {
    let dir = std::env::temp_dir().join(format!("countersign-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("body.json");
    std::fs::write(&path, "{}").unwrap();
    let mut cmd = countersign();
    cmd.args([
        "contentful",
        "verify",
        "--secret",
        SECRET,
        "--method",
        "POST",
        "--path",
        "/hook?x=1",
    ]);
    cmd.args([
        "--body-file",
        path.to_str().unwrap(),
        "--now",
        "1700000001000",
    ]);
    for header in signed_headers(&[]) {
        cmd.args(["-H", &header]);
    }
    assert_eq!(cmd.output().unwrap().status.code(), Some(0));
    std::fs::write(&path, "{}\n").unwrap();
    let mut cmd = countersign();
    cmd.args([
        "contentful",
        "verify",
        "--secret",
        SECRET,
        "--method",
        "POST",
        "--path",
        "/hook?x=1",
    ]);
    cmd.args([
        "--body-file",
        path.to_str().unwrap(),
        "--now",
        "1700000001000",
    ]);
    for header in signed_headers(&[]) {
        cmd.args(["-H", &header]);
    }
    assert_eq!(cmd.output().unwrap().status.code(), Some(1));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn path_prefix_flag_puts_back_what_a_proxy_stripped() {
    let output = countersign()
        .args([
            "contentful",
            "sign",
            "--secret",
            SECRET,
            "--method",
            "POST",
            "--path",
            "/api/hook?x=1",
        ])
        .args(["--timestamp", "1700000000000", "--body", "{}"])
        .output()
        .unwrap();
    let headers: Vec<String> = stdout_json(&output)
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, v)| format!("{n}: {}", v.as_str().unwrap()))
        .collect();
    assert_eq!(
        verify(&headers, &["--secret", SECRET]).status.code(),
        Some(1)
    );
    assert_eq!(
        verify(&headers, &["--secret", SECRET, "--path-prefix", "/api"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn bad_input_exits_2() {
    let cases: [&[&str]; 7] = [
        &[
            "contentful",
            "verify",
            "--secret",
            "short",
            "--method",
            "POST",
            "--path",
            "/",
        ],
        &[
            "contentful",
            "verify",
            "--secret",
            SECRET,
            "--method",
            "POST",
            "--path",
            "/",
            "--body-file",
            "/nonexistent/body",
        ],
        &[
            "contentful",
            "verify",
            "--secret",
            SECRET,
            "--method",
            "POST",
            "--path",
            "/",
            "-H",
            "no-colon",
        ],
        &[
            "contentful",
            "verify",
            "--secret",
            SECRET,
            "--method",
            "POST",
            "--path",
            "/",
            "--now",
            "yesterday",
        ],
        &["contentful", "verify", "--method", "POST", "--path", "/"],
        &[
            "contentful",
            "sign",
            "--secret",
            SECRET,
            "--method",
            "TRACE",
            "--path",
            "/",
        ],
        &[
            "contentful",
            "sign",
            "--secret",
            SECRET,
            "--method",
            "GET",
            "--path",
            "no-slash",
        ],
    ];
    for args in cases {
        let output = countersign().args(args).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains(SECRET));
    }
}

#[test]
fn help_has_an_example() {
    for command in ["sign", "verify"] {
        let output = countersign()
            .args(["contentful", command, "--help"])
            .output()
            .unwrap();
        assert!(output.status.success());
        assert!(String::from_utf8_lossy(&output.stdout).contains("Example:"));
    }
}

#[test]
fn values_that_begin_with_a_hyphen_are_values() {
    // A real Contentful secret may begin with `-`; so may a body or a path segment.
    let secret = format!("-{}", &SECRET[1..]);
    let sign = countersign()
        .args([
            "contentful",
            "sign",
            "--secret",
            &secret,
            "--method",
            "POST",
        ])
        .args([
            "--path",
            "/hook",
            "--timestamp",
            "1700000000000",
            "--body",
            "-1",
        ])
        .output()
        .unwrap();
    assert!(sign.status.success(), "{}", stderr(&sign));
    let headers: Vec<String> = stdout_json(&sign)
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| format!("{name}: {}", value.as_str().unwrap()))
        .collect();
    let mut verify = countersign();
    verify.args([
        "contentful",
        "verify",
        "--secret",
        &secret,
        "--method",
        "POST",
    ]);
    verify.args(["--path", "/hook", "--body", "-1", "--now", "1700000001000"]);
    for header in &headers {
        verify.args(["-H", header]);
    }
    let output = verify.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    // The other secret does not verify it: the value was read, not skipped.
    let mut wrong = countersign();
    wrong.args([
        "contentful",
        "verify",
        "--secret",
        &format!("-{}", &OTHER[1..]),
    ]);
    wrong.args(["--method", "POST", "--path", "/hook", "--body", "-1"]);
    wrong.args(["--now", "1700000001000"]);
    for header in &headers {
        wrong.args(["-H", header]);
    }
    assert_eq!(wrong.output().unwrap().status.code(), Some(1));
}

#[test]
fn sign_refuses_a_value_that_could_move_a_boundary() {
    let output = sign(&[
        "--space-id",
        "mine",
        "--header",
        "x-note: a;x-contentful-space-id:victim",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("signed_header_ambiguous"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn sign_as_curl_or_http_prints_the_whole_request_with_the_callers_headers() {
    let output = sign(&[
        "-H",
        "Content-Type: application/json",
        "--space-id",
        "my-space",
        "--format",
        "curl",
        "--url",
        "http://127.0.0.1:3001/",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let line = String::from_utf8(output.stdout).unwrap();
    assert!(
        line.starts_with("curl -sS -X POST 'http://127.0.0.1:3001/hook?x=1'"),
        "{line}"
    );
    for header in [
        "-H 'Content-Type: application/json'",
        "-H 'x-contentful-signature: ",
        "-H 'x-contentful-signed-headers: content-type,x-contentful-signed-headers,x-contentful-space-id,x-contentful-timestamp'",
        "-H 'x-contentful-timestamp: 1700000000000'",
        "-H 'x-contentful-space-id: my-space'",
        "--data-binary '{}'",
    ] {
        assert!(line.contains(header), "{header} in {line}");
    }
    let output = sign(&["--format", "http", "--url", "http://127.0.0.1:3001"]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.starts_with("POST /hook?x=1 HTTP/1.1\r\nHost: 127.0.0.1:3001\r\n"),
        "{text}"
    );
    assert!(text.ends_with("Content-Length: 2\r\n\r\n{}\n"), "{text:?}");
}
