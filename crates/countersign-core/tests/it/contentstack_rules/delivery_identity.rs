//! Delivery identity (spec section 7)

use super::*;

fn rsa_key(headers: &HeaderMap, body: &[u8]) -> ReplayKey {
    WebhookVerifier::new()
        .diagnose()
        .verify_with_keys(headers, body, Some(&keys_a()), soon())
        .unwrap()
        .replay_key()
}

fn hmac_key(value: &str, body: &[u8], verifier: &WebhookVerifier) -> ReplayKey {
    verifier
        .diagnose()
        .verify_with_keys(&hmac_headers(value), body, None, soon())
        .unwrap()
        .replay_key()
}

fn first_element(headers: &HeaderMap) -> String {
    headers["x-contentstack-request-signature"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_delivery_re_signed_is_the_same_delivery() {
    let body = body();
    let first = rsa_key(&signed(&body, SaltLength::Digest), &body);
    let resigned = signed(&body, SaltLength::Digest);
    assert_ne!(
        first_element(&resigned),
        first_element(&signed(&body, SaltLength::Digest)),
        "RSA-PSS is randomized"
    );
    assert_eq!(rsa_key(&resigned, &body), first);
    assert_eq!(
        rsa_key(&signed(&body, SaltLength::Max), &body),
        first,
        "the other salt length"
    );
    let other = body_with("2024-07-25T08:48:46.862Z");
    assert_ne!(
        rsa_key(&signed(&other, SaltLength::Digest), &other),
        first,
        "another triggered_at is another delivery"
    );
}

#[test]
fn more_fewer_or_reordered_elements_are_the_same_delivery() {
    let body = body();
    let good = first_element(&signed(&body, SaltLength::Digest));
    let other_good = first_element(&signed(&body, SaltLength::Max));
    let foreign = signer(KEY_B)
        .sign_webhook(&body, SaltLength::Digest)
        .unwrap();
    let key = rsa_key(&rsa_headers(&good), &body);
    for value in [
        format!("{foreign},{good}"),
        format!("{good},{foreign}"),
        format!("{other_good}, {good}"),
        format!("v0=abc,{good}"),
    ] {
        assert_eq!(rsa_key(&rsa_headers(&value), &body), key, "{value:.12}");
    }
}

#[test]
fn padded_and_unpadded_base64_are_the_same_delivery() {
    let body = body();
    let padded = first_element(&signed(&body, SaltLength::Digest));
    assert!(padded.ends_with('='), "RSA-2048 base64 ends in padding");
    let unpadded = padded.trim_end_matches('=');
    assert_eq!(
        rsa_key(&rsa_headers(unpadded), &body),
        rsa_key(&rsa_headers(&padded), &body)
    );
}

#[test]
fn hmac_rotation_elements_and_a_fresh_t_are_the_same_delivery_as_rsa() {
    let body = body();
    let (one, two) = (
        HmacSecret::new("secret-one").unwrap(),
        HmacSecret::new("secret-two").unwrap(),
    );
    let verifier = hmac_verifier().with_hmac_secret(two.clone());
    let at = at_ms(TRIGGERED_MS);
    let old = one.sign(&body, at);
    let new = two.sign(&body, at);
    let (t, old_v1) = old.split_once(',').unwrap();
    let new_v1 = new.split_once(',').unwrap().1;
    let key = hmac_key(&old, &body, &verifier);
    assert_eq!(
        hmac_key(&format!("{t},{old_v1},{new_v1}"), &body, &verifier),
        key
    );
    assert_eq!(
        hmac_key(&format!("{t},{new_v1},{old_v1}"), &body, &verifier),
        key
    );
    assert_eq!(hmac_key(&new, &body, &verifier), key, "one element dropped");
    let resent = one.sign(&body, at_ms(TRIGGERED_MS + 5_000));
    assert_eq!(hmac_key(&resent, &body, &verifier), key, "a fresh t");
    assert_eq!(
        rsa_key(&signed(&body, SaltLength::Digest), &body),
        key,
        "the same body, signed by the other method"
    );
}

#[test]
fn the_json_fallback_identifies_the_delivery_by_its_canonical_bytes() {
    let body = body();
    let headers = signed(&body, SaltLength::Digest);
    // What a platform that re-encodes JSON hands over: the same value, other bytes.
    let pretty = String::from_utf8(body.clone())
        .unwrap()
        .replace(",\"", ",\n  \"")
        .into_bytes();
    let reencoded = WebhookVerifier::new()
        .with_json_fallback(true)
        .diagnose()
        .verify_with_keys(&headers, &pretty, Some(&keys_a()), soon())
        .unwrap();
    assert!(reencoded.reencoded());
    assert_eq!(reencoded.replay_key(), rsa_key(&headers, &body));
    assert_eq!(reencoded.delivery_id(), reencoded.replay_key().to_hex());
    assert_eq!(reencoded.delivery_id().len(), 64);
}

/// `a + b` of two big-endian numbers of one length; `None` when the sum needs another byte.
fn add_be(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    let mut sum = vec![0u8; a.len()];
    let mut carry = 0u16;
    for i in (0..a.len()).rev() {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        sum[i] = (s & 0xff) as u8;
        carry = s >> 8;
    }
    (carry == 0).then_some(sum)
}

fn modulus_a() -> Vec<u8> {
    use pkcs1::der::Decode as _;
    let block = pem::parse(PUBLIC_A.trim()).unwrap();
    let key = pkcs1::RsaPublicKey::from_der(block.contents()).unwrap();
    let modulus = key.modulus.as_bytes();
    modulus[modulus.iter().take_while(|b| **b == 0).count()..].to_vec()
}

#[test]
fn a_signature_value_at_or_above_the_modulus_is_refused() {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let n = modulus_a();
    assert_eq!(n.len(), 256);
    let body = body();
    // s + n fits in 256 bytes for some signings s (when s < 2^2048 - n): sign until one does.
    let (s, s_plus_n) = (0..200)
        .find_map(|_| {
            let s = engine
                .decode(first_element(&signed(&body, SaltLength::Digest)).trim_start_matches("v1="))
                .unwrap();
            add_be(&s, &n).map(|sum| (s, sum))
        })
        .expect("s + n fits the modulus length for about a third of signings");
    let original = rsa_headers(&format!("v1={}", engine.encode(&s)));
    assert!(
        WebhookVerifier::new()
            .diagnose()
            .verify_with_keys(&original, &body, Some(&keys_a()), soon())
            .is_ok(),
        "s itself verifies"
    );
    for value in [s_plus_n, n.clone()] {
        let header = rsa_headers(&format!("v1={}", engine.encode(&value)));
        assert_eq!(
            rsa_error(&header, &body, soon()),
            ErrorKind::SignatureMismatch,
            "on the {:?} backend",
            countersign_core::backend()
        );
    }
}
