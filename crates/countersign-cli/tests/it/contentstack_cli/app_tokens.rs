//! App-tokens

use super::*;

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
