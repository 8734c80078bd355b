//! Building a delivery's body

use super::*;

#[test]
fn a_built_body_has_triggered_at_first_and_to_the_millisecond() {
    use countersign_core::contentstack::WebhookBody;
    let at = UNIX_EPOCH + Duration::from_nanos(1_721_897_326_861_999_999);
    let body = WebhookBody::new("entry", "publish")
        .with_api_key("blt1")
        .with_data(&json!({"z": 1, "a": "é\""}))
        .to_json(at);
    assert_eq!(
        body,
        r#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","event":"publish","api_key":"blt1","data":{"a":"é\"","z":1}}"#
    );
    // What JavaScript would send is what we built: re-serializing changes nothing.
    assert_eq!(
        countersign_core::contentstack::json_reencode(body.as_bytes()).unwrap(),
        body.as_bytes()
    );
    let headers = signed(body.as_bytes(), SaltLength::Digest);
    let verified = WebhookVerifier::new()
        .diagnose()
        .verify_with_keys(&headers, body.as_bytes(), Some(&keys_a()), at)
        .unwrap();
    assert_eq!(verified.signed_at(), at_ms(TRIGGERED_MS));
    assert_eq!(verified.api_key(), Some("blt1"));
}
