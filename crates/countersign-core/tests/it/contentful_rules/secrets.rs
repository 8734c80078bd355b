//! Secrets

use super::*;

#[test]
fn the_secrets_utf8_bytes_are_the_key() {
    // A hex-looking secret is used as text, not decoded: a verifier with another secret of the
    // same bytes decoded would not match.
    let hex_secret = SigningSecret::new("0123456789abcdef".repeat(4)).unwrap();
    let request = RequestToSign::new(Method::GET, "/");
    let signed = sign(&hex_secret, &request, at(T0), &Context::default()).unwrap();
    let canonical = countersign_core::contentful::canonical_string("GET", "/", &[], b"", T0);
    assert_eq!(
        signed.signature(),
        reference_hmac_hex(
            b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            &canonical
        )
    );
}

#[test]
fn rotation_accepts_any_secret_and_says_which() {
    let verifier = RequestVerifier::with_secrets([secret('a'), secret('b')]).unwrap();
    let request = RequestToSign::new(Method::POST, "/hook").with_body(b"{}");
    for (index, c) in ['a', 'b'].into_iter().enumerate() {
        let headers = arrived(
            &[],
            &sign(&secret(c), &request, at(T0), &Context::default()).unwrap(),
        );
        let verified = verifier
            .diagnose()
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0))
            .unwrap();
        assert_eq!(verified.secret_index(), index);
    }
    let headers = arrived(
        &[],
        &sign(&secret('c'), &request, at(T0), &Context::default()).unwrap(),
    );
    let err = verifier
        .diagnose()
        .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
}

#[test]
fn a_verifier_needs_a_secret() {
    let err = RequestVerifier::with_secrets(Vec::new()).unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::NoSecrets);
}
