//! keygen, sign and verify

use super::*;

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
