//! One test per rule of `shared/spec/contentful.md`, "Verifying" and "Headers".

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use countersign_core::contentful::steps::RequestSteps as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use countersign_core::ConfigErrorKind;
use countersign_core::contentful::{
    Context, ErrorKind, RequestKind, RequestToSign, RequestVerifier, SignedHeaders, SigningSecret,
    sign,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

const T0: u64 = 1_700_000_000_000;

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn secret(c: char) -> SigningSecret {
    SigningSecret::new(c.to_string().repeat(64)).unwrap()
}

/// Headers as they arrive: the request's own plus the signed ones.
fn arrived(own: &[(&str, &str)], signed: &SignedHeaders) -> HeaderMap {
    let mut map = HeaderMap::new();
    let mut add = |name: &str, value: &str| {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    };
    for (name, value) in own {
        add(name, value);
    }
    for (name, value) in signed.iter() {
        add(name, value);
    }
    map
}

fn signed_post(path: &str, own: &[(&str, &str)], body: &[u8], context: &Context) -> HeaderMap {
    let mut request = RequestToSign::new(Method::POST, path).with_body(body);
    for (name, value) in own {
        request = request.with_header(name, value);
    }
    arrived(own, &sign(&secret('a'), &request, at(T0), context).unwrap())
}

fn verify(
    headers: &HeaderMap,
) -> Result<countersign_core::contentful::VerifiedRequest, countersign_core::contentful::Error> {
    RequestVerifier::new(secret('a')).verify_parts(
        &Method::POST,
        "/hook",
        headers,
        b"{}",
        at(T0 + 1_000),
    )
}

fn kind(headers: &HeaderMap) -> ErrorKind {
    verify(headers).unwrap_err().kind()
}

fn good() -> HeaderMap {
    signed_post("/hook", &[], b"{}", &Context::default())
}

#[test]
fn a_correctly_signed_request_verifies() {
    assert!(verify(&good()).is_ok());
}

#[test]
fn missing_signature_is_its_own_error() {
    let mut headers = good();
    headers.remove("x-contentful-signature");
    assert_eq!(kind(&headers), ErrorKind::MissingSignature);
}

#[test]
fn signature_must_be_64_characters() {
    let mut headers = good();
    let short = &headers["x-contentful-signature"].to_str().unwrap()[..63].to_owned();
    headers.insert(
        "x-contentful-signature",
        HeaderValue::from_str(short).unwrap(),
    );
    assert_eq!(kind(&headers), ErrorKind::MalformedSignature);
}

#[test]
fn signature_must_be_lower_case_hex() {
    let mut headers = good();
    let upper = headers["x-contentful-signature"]
        .to_str()
        .unwrap()
        .to_uppercase();
    headers.insert(
        "x-contentful-signature",
        HeaderValue::from_str(&upper).unwrap(),
    );
    assert_eq!(kind(&headers), ErrorKind::MalformedSignature);
}

#[test]
fn missing_timestamp_is_its_own_error() {
    let mut headers = good();
    headers.remove("x-contentful-timestamp");
    assert_eq!(kind(&headers), ErrorKind::MissingTimestamp);
}

#[test]
fn timestamp_is_integer_milliseconds() {
    for bad in [
        "1700000000",
        "1700000000000.5",
        "-1700000000000",
        "17e11",
        "1700000000000abc",
        "",
    ] {
        let mut headers = good();
        headers.insert(
            "x-contentful-timestamp",
            HeaderValue::from_str(bad).unwrap(),
        );
        assert_eq!(kind(&headers), ErrorKind::MalformedTimestamp, "{bad:?}");
    }
}

#[test]
fn missing_signed_headers_is_its_own_error() {
    let mut headers = good();
    headers.remove("x-contentful-signed-headers");
    assert_eq!(kind(&headers), ErrorKind::MissingSignedHeaders);
    headers.insert(
        "x-contentful-signed-headers",
        HeaderValue::from_static("x-contentful-timestamp"),
    );
    assert_eq!(kind(&headers), ErrorKind::MissingSignedHeaders);
}

#[test]
fn request_exactly_ttl_old_is_expired() {
    let verifier = RequestVerifier::new(secret('a')).with_ttl(Duration::from_secs(30));
    let headers = good();
    let just_in_time =
        verifier.verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0 + 29_999));
    assert!(just_in_time.is_ok());
    let err = verifier
        .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0 + 30_000))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Expired);
    assert_eq!(err.kind().code(), "timestamp_expired");
}

#[test]
fn default_ttl_is_30_seconds() {
    let verifier = RequestVerifier::new(secret('a'));
    let headers = good();
    assert!(
        verifier
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0 + 29_999))
            .is_ok()
    );
    assert!(
        verifier
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0 + 30_000))
            .is_err()
    );
}

#[test]
fn ttl_zero_disables_the_age_check() {
    let verifier = RequestVerifier::new(secret('a')).with_ttl(Duration::ZERO);
    let year_later = at(T0 + 365 * 24 * 3600 * 1000);
    assert!(
        verifier
            .verify_parts(&Method::POST, "/hook", &good(), b"{}", year_later)
            .is_ok()
    );
}

#[test]
fn future_timestamps_are_bounded_by_the_skew() {
    let verifier = RequestVerifier::new(secret('a')).with_future_skew(Duration::from_secs(60));
    let headers = good();
    assert!(
        verifier
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0 - 60_000))
            .is_ok()
    );
    let err = verifier
        .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0 - 60_001))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimestampInFuture);
}

#[test]
fn default_future_skew_is_60_seconds() {
    let verifier = RequestVerifier::new(secret('a'));
    let headers = good();
    assert!(
        verifier
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0 - 60_000))
            .is_ok()
    );
    assert!(
        verifier
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0 - 60_001))
            .is_err()
    );
}

#[test]
fn a_listed_header_missing_from_the_request_fails() {
    let mut headers = signed_post(
        "/hook",
        &[("x-contentful-topic", "Entry.publish")],
        b"{}",
        &Context::default(),
    );
    headers.remove("x-contentful-topic");
    assert_eq!(kind(&headers), ErrorKind::SignatureMismatch);
}

#[test]
fn only_the_set_of_listed_names_matters() {
    let mut headers = signed_post(
        "/hook",
        &[("x-contentful-topic", "Entry.publish")],
        b"{}",
        &Context::default(),
    );
    headers.insert(
        "x-contentful-signed-headers",
        HeaderValue::from_static(
            "x-contentful-topic,x-contentful-timestamp,x-contentful-signed-headers",
        ),
    );
    assert!(verify(&headers).is_ok());
}

#[test]
fn listed_names_match_exactly() {
    let mut headers = signed_post(
        "/hook",
        &[("x-contentful-topic", "Entry.publish")],
        b"{}",
        &Context::default(),
    );
    headers.insert(
        "x-contentful-signed-headers",
        HeaderValue::from_static(
            "X-Contentful-Topic,x-contentful-signed-headers,x-contentful-timestamp",
        ),
    );
    assert_eq!(kind(&headers), ErrorKind::SignatureMismatch);
}

#[test]
fn unlisted_headers_are_not_covered() {
    let mut headers = good();
    headers.insert("x-contentful-topic", HeaderValue::from_static("anything"));
    headers.insert(
        "x-contentful-space-id",
        HeaderValue::from_static("forged-space"),
    );
    let verified = verify(&headers).unwrap();
    assert_eq!(verified.topic(), None, "an unsigned header is not evidence");
    assert_eq!(verified.space_id(), None);
}

#[test]
fn a_changed_signed_header_fails() {
    let mut headers = signed_post(
        "/hook",
        &[("x-contentful-topic", "Entry.publish")],
        b"{}",
        &Context::default(),
    );
    headers.insert(
        "x-contentful-topic",
        HeaderValue::from_static("Entry.delete"),
    );
    assert_eq!(kind(&headers), ErrorKind::SignatureMismatch);
}

#[test]
fn header_values_are_trimmed() {
    let mut headers = signed_post(
        "/hook",
        &[("x-contentful-topic", "Entry.publish")],
        b"{}",
        &Context::default(),
    );
    headers.insert(
        "x-contentful-topic",
        HeaderValue::from_static(" \tEntry.publish  "),
    );
    assert_eq!(
        verify(&headers)
            .unwrap()
            .topic()
            .map(|t| t.to_string())
            .as_deref(),
        Some("Entry.publish")
    );
}

#[test]
fn context_is_signed_and_reported() {
    let context = Context {
        space_id: Some("space".into()),
        environment_id: Some("master".into()),
        app_id: Some("app".into()),
        user_id: Some("user".into()),
        crn: Some("crn:contentful:::x".into()),
    };
    let headers = signed_post("/hook", &[], b"{}", &context);
    let verified = verify(&headers).unwrap();
    assert_eq!(verified.context(), context);
    let mut forged = headers.clone();
    forged.insert(
        "x-contentful-space-id",
        HeaderValue::from_static("other-space"),
    );
    assert_eq!(kind(&forged), ErrorKind::SignatureMismatch);
}

#[test]
fn context_overrides_a_request_header_of_the_same_name() {
    let context = Context {
        space_id: Some("from-context".into()),
        ..Context::default()
    };
    let request =
        RequestToSign::new(Method::GET, "/").with_header("X-Contentful-Space-Id", "from-request");
    let signed = sign(&secret('a'), &request, at(T0), &context).unwrap();
    assert_eq!(signed.get("x-contentful-space-id"), Some("from-context"));
    let headers = arrived(&[], &signed);
    let verified = RequestVerifier::new(secret('a'))
        .verify_parts(&Method::GET, "/", &headers, b"", at(T0))
        .unwrap();
    assert_eq!(verified.space_id(), Some("from-context"));
}

#[test]
fn absent_body_signs_as_empty_body() {
    let request = RequestToSign::new(Method::POST, "/x");
    let absent = sign(&secret('a'), &request, at(T0), &Context::default()).unwrap();
    let empty = sign(
        &secret('a'),
        &request.clone().with_body(b""),
        at(T0),
        &Context::default(),
    )
    .unwrap();
    assert_eq!(absent, empty);
}

#[test]
fn body_is_covered_byte_for_byte() {
    let headers = good();
    let verifier = RequestVerifier::new(secret('a'));
    let err = verifier
        .verify_parts(&Method::POST, "/hook", &headers, b"{ }", at(T0))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
}

#[test]
fn method_is_covered() {
    let headers = good();
    let err = RequestVerifier::new(secret('a'))
        .verify_parts(&Method::PUT, "/hook", &headers, b"{}", at(T0))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
}

#[test]
fn query_is_covered_and_order_matters() {
    let headers = signed_post("/hook?a=1&b=2", &[], b"{}", &Context::default());
    let verifier = RequestVerifier::new(secret('a'));
    assert!(
        verifier
            .verify_parts(&Method::POST, "/hook?a=1&b=2", &headers, b"{}", at(T0))
            .is_ok()
    );
    assert!(
        verifier
            .verify_parts(&Method::POST, "/hook?b=2&a=1", &headers, b"{}", at(T0))
            .is_err()
    );
    assert!(
        verifier
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0))
            .is_err()
    );
}

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
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0))
            .unwrap();
        assert_eq!(verified.secret_index(), index);
    }
    let headers = arrived(
        &[],
        &sign(&secret('c'), &request, at(T0), &Context::default()).unwrap(),
    );
    let err = verifier
        .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
}

#[test]
fn a_verifier_needs_a_secret() {
    let err = RequestVerifier::with_secrets(Vec::new()).unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::NoSecrets);
}

#[test]
fn path_prefix_is_put_back_before_verifying() {
    let headers = signed_post("/api/hook?x=1", &[], b"{}", &Context::default());
    let plain = RequestVerifier::new(secret('a'));
    assert!(
        plain
            .verify_parts(&Method::POST, "/hook?x=1", &headers, b"{}", at(T0))
            .is_err()
    );
    let behind_proxy = plain.clone().with_path_prefix("/api").unwrap();
    assert!(
        behind_proxy
            .verify_parts(&Method::POST, "/hook?x=1", &headers, b"{}", at(T0))
            .is_ok()
    );
    let per_request = plain.verify_parts_with_prefix(
        &Method::POST,
        "/hook?x=1",
        &headers,
        b"{}",
        at(T0),
        Some("/api"),
    );
    assert!(per_request.is_ok());
}

#[test]
fn invalid_path_prefixes_are_configuration_errors() {
    for bad in ["api", "/api/", "/", "/a?b", "/a#b", ""] {
        let err = RequestVerifier::new(secret('a'))
            .with_path_prefix(bad)
            .unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::InvalidPathPrefix, "{bad:?}");
    }
}

#[test]
fn repeated_headers_are_joined_as_node_joins_them() {
    let request = RequestToSign::new(Method::POST, "/hook")
        .with_header("x-custom", "a, b")
        .with_body(b"{}");
    let signed = sign(&secret('a'), &request, at(T0), &Context::default()).unwrap();
    let headers = arrived(&[("x-custom", "a"), ("x-custom", "b")], &signed);
    let verified = verify(&headers).unwrap();
    assert_eq!(verified.header("x-custom"), Some("a, b"));
}

#[test]
fn non_utf8_header_bytes_are_read_as_latin1() {
    let request = RequestToSign::new(Method::POST, "/hook")
        .with_header("x-name", "café")
        .with_body(b"{}");
    let signed = sign(&secret('a'), &request, at(T0), &Context::default()).unwrap();
    let mut headers = arrived(&[], &signed);
    headers.insert("x-name", HeaderValue::from_bytes(b"caf\xe9").unwrap());
    assert_eq!(verify(&headers).unwrap().header("x-name"), Some("café"));
}

#[test]
fn errors_never_show_the_signature() {
    let headers = good();
    let signature = headers["x-contentful-signature"]
        .to_str()
        .unwrap()
        .to_owned();
    let err = RequestVerifier::new(secret('b'))
        .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0))
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(&signature));
    assert!(!shown.contains(&"b".repeat(64)));
    assert!(!format!("{:?}", RequestVerifier::new(secret('b'))).contains(&"b".repeat(64)));
}

/// The parts of a request as it arrived at `uri` with `headers`.
fn parts(uri: &str, headers: HeaderMap) -> http::request::Parts {
    let mut request = http::Request::builder().method(Method::POST).uri(uri);
    *request.headers_mut().unwrap() = headers;
    request.body(()).unwrap().into_parts().0
}

#[test]
fn verify_request_uses_the_raw_target() {
    let headers = signed_post("/hook?a=%20b", &[], b"{}", &Context::default());
    let parts = parts("https://example.com/hook?a=%20b", headers);
    let verdict = RequestVerifier::new(secret('a'))
        .verify(&parts, "{}".into(), None, at(T0))
        .unwrap();
    assert_eq!(verdict.body(), "{}");
    assert_eq!(verdict.window(), Some(Duration::from_secs(30 + 60)));
}

#[test]
fn forwarded_prefix_is_taken_only_from_trusted_proxies() {
    let mut headers = signed_post("/api/hook", &[], b"{}", &Context::default());
    headers.insert("x-forwarded-prefix", HeaderValue::from_static("/api"));
    let parts = parts("/hook", headers);
    let proxy: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let stranger: std::net::IpAddr = "203.0.113.9".parse().unwrap();
    let verifier = RequestVerifier::new(secret('a'))
        .with_forwarded_prefix(countersign_core::ip::IpAllowlist::new(["10.0.0.0/8"]).unwrap());
    let verify = |peer| verifier.verify(&parts, "{}".into(), peer, at(T0));
    assert!(verify(Some(proxy)).is_ok());
    assert_eq!(
        verify(Some(stranger)).unwrap_err().kind(),
        ErrorKind::SignatureMismatch
    );
    assert_eq!(
        verify(None).unwrap_err().kind(),
        ErrorKind::SignatureMismatch
    );
    let untrusting = RequestVerifier::new(secret('a'));
    assert!(
        untrusting
            .verify(&parts, "{}".into(), Some(proxy), at(T0))
            .is_err()
    );
}

#[test]
fn the_forwarded_prefix_is_the_proxys_last_value_not_the_clients_first() {
    let verifier = RequestVerifier::new(secret('a'))
        .with_forwarded_prefix(countersign_core::ip::IpAllowlist::new(["10.0.0.0/8"]).unwrap());
    let proxy: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let signed = signed_post("/api/hook", &[], b"{}", &Context::default());
    // The client sent its own prefix; the proxy appended the real one, as a second field
    // line or joined into one.
    let mut two_lines = signed.clone();
    two_lines.append("x-forwarded-prefix", HeaderValue::from_static("/evil"));
    two_lines.append("x-forwarded-prefix", HeaderValue::from_static("/api"));
    let mut joined = signed.clone();
    joined.insert(
        "x-forwarded-prefix",
        HeaderValue::from_static("/evil, /api"),
    );
    for headers in [two_lines, joined] {
        let parts = parts("/hook", headers);
        verifier
            .verify(&parts, "{}".into(), Some(proxy), at(T0))
            .unwrap();
    }
    // And a request signed for the client's prefix does not verify with the proxy's.
    let mut forged = signed_post("/evil/hook", &[], b"{}", &Context::default());
    forged.append("x-forwarded-prefix", HeaderValue::from_static("/evil"));
    forged.append("x-forwarded-prefix", HeaderValue::from_static("/api"));
    assert_eq!(
        verifier
            .verify(&parts("/hook", forged), "{}".into(), Some(proxy), at(T0))
            .unwrap_err()
            .kind(),
        ErrorKind::SignatureMismatch
    );
}

#[test]
fn the_verdict_names_the_space_as_its_tenant() {
    let context = Context {
        space_id: Some("space-1".into()),
        ..Context::default()
    };
    let headers = signed_post("/hook", &[], b"{}", &context);
    let verdict = RequestVerifier::new(secret('a'))
        .verify(&parts("/hook", headers), "{}".into(), None, at(T0))
        .unwrap();
    assert_eq!(verdict.tenant(), Some("space-1"));
    assert_eq!(verdict.body(), "{}");
}

/// HMAC-SHA256 from the RustCrypto crates, independent of the backend under test.
fn reference_hmac_hex(key: &[u8], message: &[u8]) -> String {
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
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(ts))
            .unwrap()
            .replay_key()
    };
    assert_eq!(attempt(T0, "delivery-1"), attempt(T0 + 5_000, "delivery-1"));
    assert_ne!(attempt(T0, "delivery-1"), attempt(T0, "delivery-2"));
    // Without one, each signature is its own delivery.
    let plain = |ts: u64| {
        verifier
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

fn signed_post_at(ts: u64) -> HeaderMap {
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
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at)
            .map(|verified| (verified.kind(), verified.secret_index()))
            .map_err(|e| e.kind())
    };
    assert_eq!(check('a', "space-a"), Ok((RequestKind::Webhook, 0)));
    assert_eq!(check('b', "space-b"), Ok((RequestKind::Webhook, 1)));
    assert_eq!(check('a', "space-b"), Err(ErrorKind::SignatureMismatch));
    assert_eq!(check('b', "no-space"), Err(ErrorKind::SignatureMismatch));
}
