//! RSA: sign and verify

use super::*;

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
