//! Path prefixes

use super::*;

#[test]
fn path_prefix_is_put_back_before_verifying() {
    let headers = signed_post("/api/hook?x=1", &[], b"{}", &Context::default());
    let plain = RequestVerifier::new(secret('a'));
    assert!(
        plain
            .diagnose()
            .verify_parts(&Method::POST, "/hook?x=1", &headers, b"{}", at(T0))
            .is_err()
    );
    let behind_proxy = plain.clone().with_path_prefix("/api").unwrap();
    assert!(
        behind_proxy
            .diagnose()
            .verify_parts(&Method::POST, "/hook?x=1", &headers, b"{}", at(T0))
            .is_ok()
    );
    let per_request = plain.diagnose().verify_parts_with_prefix(
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
