//! The entry point

use super::*;

/// The parts of a request as it arrived at `uri` with `headers`.
pub(crate) fn parts(uri: &str, headers: HeaderMap) -> http::request::Parts {
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
