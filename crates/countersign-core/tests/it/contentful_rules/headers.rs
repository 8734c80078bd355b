//! The protocol headers

use super::*;

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
