//! Delivery identity

use super::*;

/// HMAC-SHA256 from the RustCrypto crates, independent of the backend under test.
pub(crate) fn reference_hmac_hex(key: &[u8], message: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn retries_of_one_delivery_share_a_replay_key_through_the_signed_idempotency_key() {
    let verifier = RequestVerifier::new(secret('a'));
    let attempt = |ts: u64, key: &str| {
        let request = RequestToSign::new(Method::POST, "/hook")
            .with_header("x-contentful-idempotency-key", key)
            .with_body(b"{}");
        let headers = arrived(
            &[("x-contentful-idempotency-key", key)],
            &sign(&secret('a'), &request, at(ts), &Context::default()).unwrap(),
        );
        verifier
            .diagnose()
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(ts))
            .unwrap()
            .replay_key()
    };
    assert_eq!(attempt(T0, "delivery-1"), attempt(T0 + 5_000, "delivery-1"));
    assert_ne!(attempt(T0, "delivery-1"), attempt(T0, "delivery-2"));
    // Without one, each signature is its own delivery.
    let plain = |ts: u64| {
        verifier
            .diagnose()
            .verify_parts(&Method::POST, "/hook", &signed_post_at(ts), b"{}", at(ts))
            .unwrap()
            .replay_key()
    };
    assert_eq!(plain(T0), plain(T0));
    assert_ne!(plain(T0), plain(T0 + 1));
}

#[test]
fn without_an_idempotency_key_every_form_of_one_signed_message_is_one_delivery() {
    let verifier = RequestVerifier::new(secret('b')).with_secret(secret('a'));
    let key_of = |headers: &HeaderMap| {
        verifier
            .diagnose()
            .verify_parts(&Method::POST, "/hook", headers, b"{}", at(T0))
            .unwrap()
            .replay_key()
    };
    let sent = signed_post_at(T0);
    let key = key_of(&sent);
    // Unsigned headers added, the signed-headers list reordered.
    let mut reworded = sent.clone();
    reworded.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    let list = sent["x-contentful-signed-headers"].to_str().unwrap();
    let reversed: Vec<&str> = list.split(',').rev().collect();
    reworded.insert(
        "x-contentful-signed-headers",
        reversed.join(",").parse().unwrap(),
    );
    assert_eq!(key_of(&reworded), key);
    // An unsigned idempotency key is not evidence and changes nothing.
    let mut unsigned = sent.clone();
    unsigned.insert("x-contentful-idempotency-key", "chosen".parse().unwrap());
    assert_eq!(key_of(&unsigned), key);
}
