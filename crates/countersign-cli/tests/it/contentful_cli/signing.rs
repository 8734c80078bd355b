//! Signing and verifying, as the toolkit does

use super::*;

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
