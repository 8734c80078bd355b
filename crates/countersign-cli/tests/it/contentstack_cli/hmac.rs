//! HMAC: sign and verify

use super::*;

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
