//! App-tokens

use super::*;

pub(crate) fn claims() -> serde_json::Value {
    json!({
        "app_uid": "app", "installation_uid": "inst", "organization_uid": "org",
        "user_uid": "user", "stack_api_key": "blt1", "custom": {"x": 1}
    })
}

#[test]
fn a_minted_app_token_verifies_with_its_claims() {
    let now = at_ms(TRIGGERED_MS);
    let token = mint_app_token(&signer(KEY_A), &claims(), now, Duration::from_secs(300)).unwrap();
    let verified = AppTokenVerifier::new()
        .verify(&token, &keys_a(), now)
        .unwrap();
    assert_eq!(verified.organization_uid, "org");
    assert_eq!(verified.stack_api_key.as_deref(), Some("blt1"));
    assert_eq!(verified.other["custom"], json!({"x": 1}));
    assert_eq!(verified.exp, TRIGGERED_MS / 1000 + 300);
}

#[test]
fn app_token_leeway_is_configurable() {
    let minted = at_ms(TRIGGERED_MS);
    let token = mint_app_token(&signer(KEY_A), &claims(), minted, Duration::from_secs(10)).unwrap();
    let later = at_ms(TRIGGERED_MS + 40_000);
    assert!(
        AppTokenVerifier::new()
            .verify(&token, &keys_a(), later)
            .is_ok()
    );
    let strict = AppTokenVerifier::new().with_leeway(Duration::ZERO);
    assert_eq!(
        strict.verify(&token, &keys_a(), later).unwrap_err().kind(),
        AppTokenErrorKind::Expired
    );
}

#[test]
fn app_token_algorithm_is_pinned_but_configurable() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../data/contentstack-vectors.json")).unwrap();
    let rs512 = v["app_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rs512")
        .unwrap();
    let token = rs512["token"].as_str().unwrap();
    let now = at_ms(v["now_ms"].as_u64().unwrap());
    assert_eq!(
        AppTokenVerifier::new()
            .verify(token, &keys_a(), now)
            .unwrap_err()
            .kind(),
        AppTokenErrorKind::WrongAlgorithm
    );
    let rs512_ok = AppTokenVerifier::new()
        .with_algorithms([AppTokenAlgorithm::Rs512])
        .unwrap();
    assert!(rs512_ok.verify(token, &keys_a(), now).is_ok());
    assert!(AppTokenVerifier::new().with_algorithms([]).is_err());
}

#[test]
fn app_token_with_a_rotating_key_set() {
    let now = at_ms(TRIGGERED_MS);
    let token = mint_app_token(&signer(KEY_A), &claims(), now, Duration::from_secs(300)).unwrap();
    let rotating = KeySet::parse(&format!("{PUBLIC_B}{PUBLIC_A}")).unwrap();
    assert!(
        AppTokenVerifier::new()
            .verify(&token, &rotating, now)
            .is_ok()
    );
    let other_only = KeySet::parse(PUBLIC_B).unwrap();
    assert_eq!(
        AppTokenVerifier::new()
            .verify(&token, &other_only, now)
            .unwrap_err()
            .kind(),
        AppTokenErrorKind::BadSignature
    );
}

#[test]
fn app_token_errors_never_show_the_token() {
    let now = at_ms(TRIGGERED_MS);
    let token = mint_app_token(&signer(KEY_A), &claims(), now, Duration::from_secs(1)).unwrap();
    let err = AppTokenVerifier::new()
        .with_leeway(Duration::ZERO)
        .verify(&token, &keys_a(), at_ms(TRIGGERED_MS + 5_000))
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(&token[..20]));
}
