//! The pure rules of a Contentful app's access token exchange: the request, the reading of
//! the answer, the retry delays. The exchange itself runs against a local Contentful in
//! `tests/tests/it/app_identity/`, with the toolkit as oracle.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use countersign_core::contentful::app_identity::{
    AccessToken, Answer, AppKey, EU_HOST, TokenRequest, one_time_token, read_answer, retry_delay,
    validate_id,
};
use http::{HeaderMap, StatusCode};

const KEY: &str = include_str!("../data/keys/contentstack-a.private.pem");
const NOW_SECS: u64 = 1_700_000_000;

fn now() -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn jwt_with(payload: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}.sig", b64.encode("{}"), b64.encode(payload))
}

#[test]
fn the_request_goes_to_the_app_installation_of_the_space_environment() {
    let request = TokenRequest::new(EU_HOST, "sp", "staging", "app1").unwrap();
    assert_eq!(
        request.url(),
        "https://api.eu.contentful.com/spaces/sp/environments/staging/app_installations/app1/access_tokens"
    );
    let value = TokenRequest::authorization("a.b.c").unwrap();
    assert_eq!(value, "Bearer a.b.c");
    assert!(value.is_sensitive());
}

#[test]
fn ids_that_would_change_the_path_are_refused() {
    for id in [
        "",
        ".",
        "..",
        "a/b",
        "a?b",
        "a#b",
        "a b",
        "é",
        &"a".repeat(65),
    ] {
        assert!(validate_id("space id", id).is_err(), "{id:?}");
        assert!(
            TokenRequest::new(EU_HOST, id, "master", "app").is_err(),
            "{id:?}"
        );
    }
    for id in ["master", "a.b", "x_y-z", &"a".repeat(64)] {
        assert!(validate_id("space id", id).is_ok(), "{id:?}");
    }
    let key = AppKey::from_pem(KEY).unwrap();
    assert!(one_time_token(&key, "app\"", None, now()).is_err());
    assert!(one_time_token(&key, "app", Some("k\\"), now()).is_err());
}

/// The token of a `201` with `body`.
fn issued(body: &str) -> AccessToken {
    match read_answer(
        StatusCode::CREATED,
        &HeaderMap::new(),
        body.as_bytes(),
        now(),
    ) {
        Answer::Issued(token) => token,
        other => panic!("not issued: {other:?}"),
    }
}

#[test]
fn a_201_gives_the_token_and_its_expiry() {
    let token = jwt_with(&format!(r#"{{"exp":{}}}"#, NOW_SECS + 600));
    let body = format!(r#"{{"token":"{token}","sys":{{"type":"AccessToken"}}}}"#);
    let issued = issued(&body);
    assert_eq!(issued.expose(), token);
    assert_eq!(issued.expires_at(), now() + Duration::from_secs(600));
    assert!(issued.is_fresh(now(), Duration::from_secs(599)));
    assert!(!issued.is_fresh(now(), Duration::from_secs(600)));
}

#[test]
fn a_token_without_exp_is_used_once() {
    let body = format!(r#"{{"token":"{}"}}"#, jwt_with("{}"));
    let issued = issued(&body);
    assert_eq!(issued.expires_at(), now());
    assert!(!issued.is_fresh(now(), Duration::ZERO));
}

#[test]
fn a_201_without_a_token_or_another_2xx_is_a_refusal() {
    for (status, body) in [
        (StatusCode::CREATED, &b"{}"[..]),
        (StatusCode::CREATED, b"not json"),
        (StatusCode::CREATED, br#"{"token":""}"#),
        (StatusCode::OK, br#"{"token":"a.b.c"}"#),
    ] {
        let answer = read_answer(status, &HeaderMap::new(), body, now());
        assert!(
            matches!(answer, Answer::Refused(ref r) if r.status == status),
            "{answer:?}"
        );
    }
}

#[test]
fn a_429_waits_for_the_reset_header_then_retry_after_seconds_or_date() {
    let wait = |headers: &[(&'static str, &str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        match read_answer(StatusCode::TOO_MANY_REQUESTS, &map, b"", now()) {
            Answer::RateLimited(wait) => wait,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        wait(&[("x-contentful-ratelimit-reset", "7")]),
        Some(Duration::from_secs(7))
    );
    assert_eq!(
        wait(&[("x-contentful-ratelimit-reset", "7"), ("retry-after", "30")]),
        Some(Duration::from_secs(7)),
        "Contentful's own header first"
    );
    assert_eq!(wait(&[("retry-after", "3")]), Some(Duration::from_secs(3)));
    // NOW_SECS is 2023-11-14T22:13:20Z; an HTTP date 20 s later:
    assert_eq!(
        wait(&[("retry-after", "Tue, 14 Nov 2023 22:13:40 GMT")]),
        Some(Duration::from_secs(20))
    );
    assert_eq!(
        wait(&[("retry-after", "Tue, 14 Nov 2023 22:00:00 +0000")]),
        Some(Duration::ZERO)
    );
    assert_eq!(wait(&[("retry-after", "soon")]), None);
    assert_eq!(wait(&[]), None);
}

#[test]
fn a_5xx_is_a_server_error_and_any_other_status_a_refusal_with_its_reason() {
    assert_eq!(
        read_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &HeaderMap::new(),
            b"",
            now()
        ),
        Answer::ServerError(StatusCode::SERVICE_UNAVAILABLE)
    );
    let refused =
        |body: &[u8]| match read_answer(StatusCode::FORBIDDEN, &HeaderMap::new(), body, now()) {
            Answer::Refused(refusal) => refusal.reason,
            other => panic!("{other:?}"),
        };
    assert_eq!(
        refused(br#"{"sys":{"type":"Error","id":"AccessDenied"},"message":"no\nkey"}"#),
        "AccessDenied: no key",
        "control characters never reach a terminal"
    );
    assert_eq!(refused(br#"{"sys":{"id":"NotFound"}}"#), "NotFound");
    assert_eq!(refused(b"<html>"), "Forbidden");
    let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(1000));
    assert_eq!(refused(long.as_bytes()).len(), 300);
}

#[test]
fn retry_delays_double_with_jitter_and_are_bounded() {
    for attempt in 0..10 {
        let base = Duration::from_millis(250) * (1 << attempt.min(5));
        let base = base.min(Duration::from_secs(8));
        let delay = retry_delay(attempt);
        assert!(
            delay >= base && delay <= base + base / 4,
            "{attempt}: {delay:?}"
        );
    }
}

#[test]
fn an_access_token_never_shows_in_debug() {
    let token = AccessToken::new("secret.token.value", now());
    assert!(!format!("{token:?}").contains("secret"));
    assert_eq!(token.authorization().unwrap(), "Bearer secret.token.value");
    assert!(token.authorization().unwrap().is_sensitive());
}
