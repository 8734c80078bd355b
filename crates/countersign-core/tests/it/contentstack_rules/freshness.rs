//! Freshness

use super::*;

#[test]
fn triggered_at_older_than_the_tolerance_is_expired() {
    let body = body();
    let headers = signed(&body, SaltLength::Digest);
    let verifier = WebhookVerifier::new().with_tolerance(Duration::from_secs(300));
    assert!(
        verifier
            .diagnose()
            .verify_with_keys(
                &headers,
                &body,
                Some(&keys_a()),
                at_ms(TRIGGERED_MS + 300_000)
            )
            .is_ok()
    );
    let err = verifier
        .diagnose()
        .verify_with_keys(
            &headers,
            &body,
            Some(&keys_a()),
            at_ms(TRIGGERED_MS + 300_001),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Expired);
}

#[test]
fn default_tolerance_is_thirty_minutes() {
    let body = body();
    let headers = signed(&body, SaltLength::Digest);
    assert_eq!(DEFAULT_TOLERANCE, Duration::from_secs(1800));
    assert!(
        WebhookVerifier::new()
            .diagnose()
            .verify_with_keys(
                &headers,
                &body,
                Some(&keys_a()),
                at_ms(TRIGGERED_MS + 1_799_000)
            )
            .is_ok()
    );
    assert_eq!(
        rsa_error(&headers, &body, at_ms(TRIGGERED_MS + 1_801_000)),
        ErrorKind::Expired
    );
}

#[test]
fn no_automatic_retry_of_an_unrefreshed_delivery_is_refused_as_stale_by_default() {
    // Contentstack's schedule: an attempt, then retries 5, 25, 125 and 625 s after each
    // failure, each attempt waiting up to 30 s for an answer.
    let worst: u64 =
        RETRY_SCHEDULE.iter().map(Duration::as_secs).sum::<u64>() + 5 * ATTEMPT_TIMEOUT.as_secs();
    assert_eq!(Duration::from_secs(worst), LAST_RETRY_AFTER);
    assert_eq!(worst, 930);
    let body = body();
    let mut elapsed = 0;
    for (attempt, pause) in std::iter::once(0)
        .chain(RETRY_SCHEDULE.iter().map(Duration::as_secs))
        .enumerate()
    {
        elapsed += pause + ATTEMPT_TIMEOUT.as_secs();
        // Each attempt re-signed, with the triggered_at of the event.
        let headers = signed(&body, SaltLength::Digest);
        let at = at_ms(TRIGGERED_MS + elapsed * 1000);
        assert!(
            WebhookVerifier::new()
                .diagnose()
                .verify_with_keys(&headers, &body, Some(&keys_a()), at)
                .is_ok(),
            "attempt {attempt} at {elapsed} s"
        );
        let hmac = HmacSecret::new("secret-one")
            .unwrap()
            .sign(&body, at_ms(TRIGGERED_MS));
        assert!(
            hmac_verifier()
                .diagnose()
                .verify_with_keys(&hmac_headers(&hmac), &body, None, at)
                .is_ok()
        );
    }
    assert_eq!(elapsed, worst);
    assert!(
        DEFAULT_TOLERANCE >= LAST_RETRY_AFTER + LAST_RETRY_AFTER / 2,
        "with a margin"
    );
}

#[test]
fn triggered_at_in_the_future_is_bounded_by_the_skew() {
    let body = body();
    let headers = signed(&body, SaltLength::Digest);
    assert!(
        WebhookVerifier::new()
            .diagnose()
            .verify_with_keys(
                &headers,
                &body,
                Some(&keys_a()),
                at_ms(TRIGGERED_MS - 60_000)
            )
            .is_ok()
    );
    assert_eq!(
        rsa_error(&headers, &body, at_ms(TRIGGERED_MS - 61_000)),
        ErrorKind::TimestampInFuture
    );
}

#[test]
fn missing_triggered_at_is_its_own_rejection() {
    let body = br#"{"module":"entry","event":"create"}"#;
    assert_eq!(
        rsa_error(&signed(body, SaltLength::Digest), body, soon()),
        ErrorKind::MissingTimestamp
    );
}

#[test]
fn triggered_at_is_parsed_as_rfc_3339_not_subtracted_as_a_string() {
    for bad in ["2024-07-25 08:48:46", "yesterday", "1721897326861"] {
        let body = body_with(bad);
        assert_eq!(
            rsa_error(&signed(&body, SaltLength::Digest), &body, soon()),
            ErrorKind::MalformedTimestamp,
            "{bad}"
        );
    }
    let numeric = br#"{"triggered_at":1721897326861}"#;
    assert_eq!(
        rsa_error(&signed(numeric, SaltLength::Digest), numeric, soon()),
        ErrorKind::MalformedTimestamp
    );
    let offset = body_with("2024-07-25T10:48:46.861+02:00");
    assert!(
        WebhookVerifier::new()
            .diagnose()
            .verify_with_keys(
                &signed(&offset, SaltLength::Digest),
                &offset,
                Some(&keys_a()),
                soon()
            )
            .is_ok()
    );
}

#[test]
fn a_signed_body_that_is_not_json_has_no_triggered_at() {
    let body = b"not json";
    assert_eq!(
        rsa_error(&signed(body, SaltLength::Digest), body, soon()),
        ErrorKind::MalformedTimestamp
    );
}
