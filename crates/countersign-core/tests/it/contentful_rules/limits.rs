//! Limits, and space webhooks

use super::*;

pub(crate) fn signed_post_at(ts: u64) -> HeaderMap {
    let request = RequestToSign::new(Method::POST, "/hook").with_body(b"{}");
    arrived(
        &[],
        &sign(&secret('a'), &request, at(ts), &Context::default()).unwrap(),
    )
}

#[test]
fn protocol_headers_are_trimmed_as_javascript_trims_them() {
    // Node hands the toolkit Latin-1 text, which `.trim()` strips of U+00A0 as of spaces and
    // tabs; a byte 0xA0 at either end of a protocol header is therefore not part of it.
    let trimmed = |headers: &HeaderMap, name: &'static str, before: &[u8], after: &[u8]| {
        let mut headers = headers.clone();
        let value = headers[name].as_bytes().to_vec();
        let padded = [before, value.as_slice(), after].concat();
        headers.insert(name, HeaderValue::from_bytes(&padded).unwrap());
        headers
    };
    let good = good();
    for name in [
        "x-contentful-signature",
        "x-contentful-timestamp",
        "x-contentful-signed-headers",
    ] {
        for (before, after) in [
            (&b" \t"[..], &b"\t "[..]),
            (b"\xa0", b"\xa0 "),
            (b"", b"\xa0"),
        ] {
            assert!(
                verify(&trimmed(&good, name, before, after)).is_ok(),
                "{name} with {before:?} and {after:?}"
            );
        }
    }
    // Inside the value, such a byte is part of it.
    let mut inside = good.clone();
    let signature = inside["x-contentful-signature"].as_bytes().to_vec();
    let broken = [&signature[..10], b"\xa0", &signature[10..]].concat();
    inside.insert(
        "x-contentful-signature",
        HeaderValue::from_bytes(&broken).unwrap(),
    );
    assert_eq!(kind(&inside), ErrorKind::MalformedSignature);
}

#[test]
fn a_target_with_an_unsigned_tail_is_refused() {
    // The toolkit signs only up to a second `?`; before, the tail reached the handler unsigned.
    let headers = signed_post("/hook?a=1?admin=true", &[], b"{}", &Context::default());
    let verifier = RequestVerifier::new(secret('a'));
    let err = verifier
        .diagnose()
        .verify_parts(
            &Method::POST,
            "/hook?a=1?admin=true",
            &headers,
            b"{}",
            at(T0),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsignedTarget);
    assert_eq!(err.kind().code(), "target_unsigned");
    for tail in ["/hook??", "/hook?a?", "/hook??x"] {
        let headers = signed_post(tail, &[], b"{}", &Context::default());
        assert_eq!(
            verifier
                .diagnose()
                .verify_parts(&Method::POST, tail, &headers, b"{}", at(T0))
                .unwrap_err()
                .kind(),
            ErrorKind::UnsignedTarget,
            "{tail}"
        );
    }
    // One `?` is a query; a `?` in the path cannot occur (it starts the query).
    let headers = signed_post("/hook?a=1", &[], b"{}", &Context::default());
    assert!(
        verifier
            .diagnose()
            .verify_parts(&Method::POST, "/hook?a=1", &headers, b"{}", at(T0))
            .is_ok()
    );
}

#[test]
fn the_signed_header_list_is_capped_before_any_matching() {
    use countersign_core::contentful::MAX_SIGNED_HEADERS;
    // Exactly the cap: the list, the timestamp and 62 headers of the app's choosing.
    let own: Vec<(String, String)> = (0..MAX_SIGNED_HEADERS - 2)
        .map(|i| (format!("x-app-{i:02}"), format!("v{i}")))
        .collect();
    let own: Vec<(&str, &str)> = own.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let headers = signed_post("/hook", &own, b"{}", &Context::default());
    let listed = headers["x-contentful-signed-headers"].to_str().unwrap();
    assert_eq!(listed.split(',').count(), MAX_SIGNED_HEADERS);
    verify(&headers).unwrap();

    // One more is refused, whatever the signature.
    let mut over = headers.clone();
    over.insert(
        "x-contentful-signed-headers",
        HeaderValue::from_str(&format!("{listed},x-one-more")).unwrap(),
    );
    assert_eq!(kind(&over), ErrorKind::TooManySignedHeaders);

    // A forged list of 100,000 names, with as many request headers, is refused at once.
    let mut forged = good();
    let names: Vec<String> = (0..100_000).map(|i| format!("x-h{i}")).collect();
    for name in names.iter().take(5_000) {
        forged.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_static("v"),
        );
    }
    forged.insert(
        "x-contentful-signed-headers",
        HeaderValue::from_str(&names.join(",")).unwrap(),
    );
    let err = verify(&forged).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManySignedHeaders);
    assert_eq!(err.kind().code(), "signed_headers_too_many");
    assert!(err.message().contains("lists 100000 names"), "{err:?}");

    // As is a list of nothing but commas: every name empty, counted in full.
    let mut commas = good();
    commas.insert(
        "x-contentful-signed-headers",
        HeaderValue::from_str(&",".repeat(60_000)).unwrap(),
    );
    let err = verify(&commas).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManySignedHeaders);
    assert!(err.message().contains("lists 60001 names"), "{err:?}");
}

#[test]
fn windows_of_any_length_verify_without_overflowing() {
    // Duration::MAX as the TTL or skew used to overflow the acceptance window and panic.
    let verifier = RequestVerifier::new(secret('a'))
        .with_ttl(Duration::MAX)
        .with_future_skew(Duration::MAX);
    assert_eq!(
        verifier.acceptance_window(),
        Some(2 * countersign_core::MAX_WINDOW)
    );
    let headers = good();
    let parts = parts("/hook", headers);
    let verdict = verifier
        .verify(&parts, "{}".into(), None, at(T0 + 1_000))
        .unwrap();
    assert_eq!(verdict.window(), Some(2 * countersign_core::MAX_WINDOW));
}

#[test]
fn a_verifier_of_space_webhooks_takes_each_spaces_own_as_webhooks() {
    let secret = |c: char| SigningSecret::new(c.to_string().repeat(64)).unwrap();
    let verifier = RequestVerifier::for_space_webhooks("space-a", secret('a'))
        .with_space_webhook_secret("space-b", secret('b'));
    let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    let request = RequestToSign::new(Method::POST, "/hook").with_body(b"{}");
    let check = |signer: char, space: &str| {
        let context = Context {
            space_id: Some(space.into()),
            ..Context::default()
        };
        let headers = sign(&secret(signer), &request, at, &context)
            .unwrap()
            .to_header_map()
            .unwrap();
        verifier
            .diagnose()
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at)
            .map(|verified| (verified.kind(), verified.secret_index()))
            .map_err(|e| e.kind())
    };
    assert_eq!(check('a', "space-a"), Ok((RequestKind::Webhook, 0)));
    assert_eq!(check('b', "space-b"), Ok((RequestKind::Webhook, 1)));
    assert_eq!(check('a', "space-b"), Err(ErrorKind::SignatureMismatch));
    assert_eq!(check('b', "no-space"), Err(ErrorKind::SignatureMismatch));
}
