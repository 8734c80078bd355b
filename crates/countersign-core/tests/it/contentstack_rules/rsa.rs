//! RSA method

use super::*;

#[test]
fn salt_length_32_is_accepted_and_reported() {
    let body = body();
    let verified = WebhookVerifier::new()
        .diagnose()
        .verify_with_keys(
            &signed(&body, SaltLength::Digest),
            &body,
            Some(&keys_a()),
            soon(),
        )
        .unwrap();
    assert!(matches!(
        verified.verified_by(),
        VerifiedBy::Rsa {
            salt: SaltLength::Digest,
            ..
        }
    ));
}

#[test]
fn salt_length_max_is_accepted_and_reported() {
    let body = body();
    let verified = WebhookVerifier::new()
        .diagnose()
        .verify_with_keys(
            &signed(&body, SaltLength::Max),
            &body,
            Some(&keys_a()),
            soon(),
        )
        .unwrap();
    assert!(matches!(
        verified.verified_by(),
        VerifiedBy::Rsa {
            salt: SaltLength::Max,
            ..
        }
    ));
}

#[test]
fn the_raw_body_is_what_is_signed() {
    let body = body();
    let headers = signed(&body, SaltLength::Digest);
    let mut changed = body.clone();
    changed.push(b' ');
    assert_eq!(
        rsa_error(&headers, &changed, soon()),
        ErrorKind::SignatureMismatch
    );
}

#[test]
fn no_signature_header_is_missing_signature() {
    assert_eq!(
        rsa_error(&HeaderMap::new(), &body(), soon()),
        ErrorKind::MissingSignature
    );
}

#[test]
fn the_legacy_signature_header_is_never_trusted() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-contentstack-signature",
        HeaderValue::from_static("da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    );
    assert_eq!(
        rsa_error(&headers, &body(), soon()),
        ErrorKind::MissingSignature
    );
}

#[test]
fn no_v1_element_is_a_rejection() {
    assert_eq!(
        rsa_error(&rsa_headers("v2=abc,sig=def"), &body(), soon()),
        ErrorKind::MalformedSignature
    );
    assert_eq!(
        rsa_error(&rsa_headers("v1=%%%not-base64"), &body(), soon()),
        ErrorKind::MalformedSignature
    );
}

#[test]
fn a_signature_header_of_a_thousand_elements_is_refused_unread() {
    let huge = vec!["v1=AAAA"; 1000].join(",");
    assert_eq!(
        rsa_error(&rsa_headers(&huge), &body(), soon()),
        ErrorKind::MalformedSignature
    );
}

#[test]
fn no_key_is_key_unavailable_not_a_forgery() {
    let body = body();
    let err = WebhookVerifier::new()
        .diagnose()
        .verify_with_keys(&signed(&body, SaltLength::Digest), &body, None, soon())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyUnavailable);
    assert_eq!(err.kind().code(), "key_unavailable");
}

#[test]
fn a_key_set_accepts_any_of_its_keys_and_says_which() {
    let body = body();
    let rotating = KeySet::parse(&format!("{PUBLIC_B}{PUBLIC_A}")).unwrap();
    let verified = WebhookVerifier::new()
        .diagnose()
        .verify_with_keys(
            &signed(&body, SaltLength::Digest),
            &body,
            Some(&rotating),
            soon(),
        )
        .unwrap();
    let VerifiedBy::Rsa {
        key_index,
        key_fingerprint,
        ..
    } = verified.verified_by()
    else {
        panic!()
    };
    assert_eq!(*key_index, 1);
    assert_eq!(
        key_fingerprint,
        keys_a().iter().next().unwrap().fingerprint()
    );
}

#[test]
fn the_envelope_is_parsed_from_the_verified_bytes() {
    let body = body();
    let verified = WebhookVerifier::new()
        .diagnose()
        .verify_with_keys(
            &signed(&body, SaltLength::Digest),
            &body,
            Some(&keys_a()),
            soon(),
        )
        .unwrap();
    assert_eq!(verified.module(), Some(Module::Entry));
    assert_eq!(verified.event(), Some(Event::Create));
    assert_eq!(verified.api_key(), Some("blt1"));
    assert_eq!(verified.signed_at(), at_ms(TRIGGERED_MS));
}
