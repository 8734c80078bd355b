//! What is signed

use super::*;

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
        .diagnose()
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
        .diagnose()
        .verify_parts(&Method::POST, "/hook", &headers, b"{ }", at(T0))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
}

#[test]
fn method_is_covered() {
    let headers = good();
    let err = RequestVerifier::new(secret('a'))
        .diagnose()
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
            .diagnose()
            .verify_parts(&Method::POST, "/hook?a=1&b=2", &headers, b"{}", at(T0))
            .is_ok()
    );
    assert!(
        verifier
            .diagnose()
            .verify_parts(&Method::POST, "/hook?b=2&a=1", &headers, b"{}", at(T0))
            .is_err()
    );
    assert!(
        verifier
            .diagnose()
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0))
            .is_err()
    );
}
