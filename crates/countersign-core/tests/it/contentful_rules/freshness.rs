//! Freshness

use super::*;

#[test]
fn request_exactly_ttl_old_is_expired() {
    let verifier = RequestVerifier::new(secret('a')).with_ttl(Duration::from_secs(30));
    let headers = good();
    let just_in_time =
        verifier
            .diagnose()
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0 + 29_999));
    assert!(just_in_time.is_ok());
    let err = verifier
        .diagnose()
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
            .diagnose()
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0 + 29_999))
            .is_ok()
    );
    assert!(
        verifier
            .diagnose()
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
            .diagnose()
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
            .diagnose()
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0 - 60_000))
            .is_ok()
    );
    let err = verifier
        .diagnose()
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
            .diagnose()
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0 - 60_000))
            .is_ok()
    );
    assert!(
        verifier
            .diagnose()
            .verify_parts(&Method::POST, "/hook", &headers, b"{}", at(T0 - 60_001))
            .is_err()
    );
}
