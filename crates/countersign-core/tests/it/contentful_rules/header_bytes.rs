//! Header bytes, and what errors show

use super::*;

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
        .diagnose()
        .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0))
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(&signature));
    assert!(!shown.contains(&"b".repeat(64)));
    assert!(!format!("{:?}", RequestVerifier::new(secret('b'))).contains(&"b".repeat(64)));
}
