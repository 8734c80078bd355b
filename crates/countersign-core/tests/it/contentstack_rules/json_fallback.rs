//! JSON fallback

use super::*;

#[test]
fn json_fallback_is_off_by_default_and_hands_on_canonical_bytes_when_on() {
    let canonical = body();
    // What a framework that re-serializes with indentation hands over.
    let text = String::from_utf8(canonical.clone()).unwrap();
    let pretty = text
        .replace("\":", "\": ")
        .replace(",\"", ",\n  \"")
        .into_bytes();
    assert_ne!(pretty, canonical);
    let headers = signed(&canonical, SaltLength::Digest);
    assert_eq!(
        rsa_error(&headers, &pretty, soon()),
        ErrorKind::SignatureMismatch
    );
    let verified = WebhookVerifier::new()
        .with_json_fallback(true)
        .diagnose()
        .verify_with_keys(&headers, &pretty, Some(&keys_a()), soon())
        .unwrap();
    assert!(verified.reencoded());
    assert_eq!(verified.canonical_body(), Some(canonical.as_slice()));
}

#[test]
fn json_fallback_does_not_rescue_a_different_document() {
    let headers = signed(&body(), SaltLength::Digest);
    let other = body_with("2024-07-25T08:48:46.862Z");
    let err = WebhookVerifier::new()
        .with_json_fallback(true)
        .diagnose()
        .verify_with_keys(&headers, &other, Some(&keys_a()), soon())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
}
