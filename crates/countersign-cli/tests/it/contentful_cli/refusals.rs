//! Refusals: exit 1

use super::*;

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
