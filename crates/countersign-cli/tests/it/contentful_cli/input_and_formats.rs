//! Input, help and output formats

use super::*;

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
        line.starts_with("curl -sS -X POST --url 'http://127.0.0.1:3001/hook?x=1'"),
        "{line}"
    );
    for header in [
        "-H 'Content-Type: application/json'",
        "-H 'x-contentful-signature: ",
        "-H 'x-contentful-signed-headers: content-type,x-contentful-signed-headers,x-contentful-space-id,x-contentful-timestamp'",
        "-H 'x-contentful-timestamp: 1700000000000'",
        "-H 'x-contentful-space-id: my-space'",
        "--data-raw '{}'",
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
