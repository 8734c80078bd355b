//! One test per rule of `shared/spec/contentstack.md`: keys, regions, both webhook methods,
//! freshness and app-tokens.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use countersign_core::contentstack::steps::WebhookSteps as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use countersign_core::ConfigErrorKind;
use countersign_core::contentstack::{
    ATTEMPT_TIMEOUT, AppTokenAlgorithm, AppTokenErrorKind, AppTokenVerifier, DEFAULT_TOLERANCE,
    ErrorKind, Event, HmacSecret, KeySet, LAST_RETRY_AFTER, Module, PublicKey, RETRY_SCHEDULE,
    Region, SaltLength, SigningKey, StackAllowlist, StackCheck, Tenancy, TenantUnavailable,
    VerifiedBy, VerifiedWebhook, WebhookVerifier, mint_app_token, stack_check_fn,
};
use countersign_core::replay::ReplayKey;
use http::{HeaderMap, HeaderValue};
use serde_json::json;

const KEY_A: &str = include_str!("data/keys/contentstack-a.private.pem");
const KEY_A_PKCS1: &str = include_str!("data/keys/contentstack-a.pkcs1-private.pem");
const KEY_B: &str = include_str!("data/keys/contentstack-b.private.pem");
const PUBLIC_A: &str = include_str!("data/keys/contentstack-a.public.pem");
const SPKI_A: &str = include_str!("data/keys/contentstack-a.spki.pem");
const JSON_A: &str = include_str!("data/keys/contentstack-a.public-keys.json");
const PUBLIC_B: &str = include_str!("data/keys/contentstack-b.public.pem");

/// 2024-07-25T08:48:46.861Z
const TRIGGERED_MS: u64 = 1_721_897_326_861;

fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn soon() -> SystemTime {
    at_ms(TRIGGERED_MS + 2_000)
}

fn signer(pem: &str) -> SigningKey {
    SigningKey::from_pem(pem).unwrap()
}

fn keys_a() -> KeySet {
    KeySet::parse(PUBLIC_A).unwrap()
}

fn body_with(triggered_at: &str) -> Vec<u8> {
    format!(r#"{{"triggered_at":"{triggered_at}","module":"entry","api_key":"blt1","event":"create","data":{{"x":1}}}}"#)
        .into_bytes()
}

fn body() -> Vec<u8> {
    body_with("2024-07-25T08:48:46.861Z")
}

fn rsa_headers(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-contentstack-request-signature",
        HeaderValue::from_str(value).unwrap(),
    );
    headers
}

fn signed(body: &[u8], salt: SaltLength) -> HeaderMap {
    rsa_headers(&signer(KEY_A).sign_webhook(body, salt).unwrap())
}

fn rsa_error(headers: &HeaderMap, body: &[u8], now: SystemTime) -> ErrorKind {
    WebhookVerifier::new()
        .verify_with_keys(headers, body, Some(&keys_a()), now)
        .unwrap_err()
        .kind()
}

// Keys

#[test]
fn pkcs1_spki_and_public_keys_json_are_the_same_key() {
    let pkcs1 = PublicKey::from_pem(PUBLIC_A).unwrap();
    let spki = PublicKey::from_pem(SPKI_A).unwrap();
    let json = KeySet::from_public_keys_json(JSON_A.as_bytes()).unwrap();
    assert_eq!(pkcs1, spki);
    assert_eq!(json.iter().next(), Some(&pkcs1));
    assert_eq!(pkcs1.bits(), 2048);
    assert_eq!(pkcs1.fingerprint().len(), 16);
}

#[test]
fn a_key_set_parses_from_any_accepted_form() {
    for text in [PUBLIC_A, SPKI_A, JSON_A] {
        assert_eq!(KeySet::parse(text).unwrap().len(), 1);
    }
    let both = KeySet::parse(&format!("{PUBLIC_A}\n{SPKI_A}\n{PUBLIC_B}")).unwrap();
    assert_eq!(both.len(), 3);
}

#[test]
fn pkcs8_and_pkcs1_private_keys_give_the_same_public_key() {
    let from_pkcs8 = signer(KEY_A);
    let from_pkcs1 = signer(KEY_A_PKCS1);
    assert_eq!(from_pkcs8.public_key(), from_pkcs1.public_key());
    assert_eq!(
        from_pkcs8.public_key(),
        &PublicKey::from_pem(PUBLIC_A).unwrap()
    );
    // What keygen writes parses back to the same key.
    assert_eq!(
        PublicKey::from_pem(&from_pkcs8.public_key().to_pkcs1_pem()).unwrap(),
        from_pkcs8.public_key().clone()
    );
    assert_eq!(
        SigningKey::from_pem(&from_pkcs8.to_pkcs1_pem())
            .unwrap()
            .public_key(),
        from_pkcs8.public_key()
    );
    let json = from_pkcs8.public_key().to_public_keys_json();
    assert_eq!(
        KeySet::parse(&json).unwrap(),
        KeySet::from(from_pkcs8.public_key().clone())
    );
}

#[test]
fn unusable_keys_are_configuration_errors() {
    let cases = [
        include_str!("data/keys/weak-1024.public.pem"),
        include_str!("data/keys/ec-p256.spki.pem"),
        KEY_A, // a private key where a public one belongs
        "not a key",
        "{\"other\":\"x\"}",
        "{\"signing-key\":42}",
        "",
    ];
    for text in cases {
        let err = KeySet::parse(text).unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::InvalidKey, "{text:.40}");
    }
    assert!(SigningKey::from_pem(PUBLIC_A).is_err());
}

#[test]
fn keys_come_from_files_and_environment_variables() {
    let dir = std::env::temp_dir().join(format!("countersign-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("public-keys.json");
    std::fs::write(&path, JSON_A).unwrap();
    assert_eq!(KeySet::from_file(&path).unwrap(), keys_a());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(KeySet::from_file(dir.join("missing.pem")).is_err());

    // A PEM in an environment variable often has literal `\n`.
    read_in_child_process(
        "COUNTERSIGN_TEST_KEYS_FROM_ENV",
        &PUBLIC_A.replace('\n', "\\n"),
    );
    assert!(KeySet::from_env("COUNTERSIGN_TEST_UNSET_VARIABLE").is_err());
}

/// `std::env::set_var` is `unsafe` in edition 2024, and this crate has none: the variable is
/// set for a child process (this test binary, running `env_probe`), which reads the keys.
fn read_in_child_process(name: &str, value: &str) {
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new(exe)
        .args(["--exact", "env_probe", "--ignored", "--nocapture"])
        .env(name, value)
        .env("COUNTERSIGN_ENV_PROBE", name)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("probe: 1 key"));
}

#[test]
#[ignore = "run in a child process by keys_come_from_files_and_environment_variables"]
fn env_probe() {
    let name = std::env::var("COUNTERSIGN_ENV_PROBE").unwrap();
    let keys = KeySet::from_env(&name).unwrap();
    println!("probe: {} key", keys.len());
}

#[test]
fn debug_never_shows_key_material() {
    let key = signer(KEY_A);
    let shown = format!("{key:?} {:?}", key.public_key());
    assert!(shown.contains(key.public_key().fingerprint()));
    assert!(!shown.contains("MII"));
    let secret = HmacSecret::new("super-secret-value").unwrap();
    assert!(!format!("{secret:?}").contains("super-secret"));
    let verifier = WebhookVerifier::new().with_hmac_secret(secret);
    assert!(!format!("{verifier:?}").contains("super-secret"));
}

// Regions

#[test]
fn all_seven_regions_have_their_app_host() {
    let hosts = [
        ("na", "https://app.contentstack.com"),
        ("eu", "https://eu-app.contentstack.com"),
        ("au", "https://au-app.contentstack.com"),
        ("azure-na", "https://azure-na-app.contentstack.com"),
        ("azure-eu", "https://azure-eu-app.contentstack.com"),
        ("gcp-na", "https://gcp-na-app.contentstack.com"),
        ("gcp-eu", "https://gcp-eu-app.contentstack.com"),
    ];
    assert_eq!(Region::ALL.len(), hosts.len());
    for (region, (id, host)) in Region::ALL.iter().zip(hosts) {
        assert_eq!(region.id(), id);
        assert_eq!(region.app_base_url(), host);
        assert_eq!(
            region.public_keys_url(),
            format!("{host}/.well-known/public-keys.json")
        );
        assert_eq!(id.parse::<Region>().unwrap(), *region);
    }
}

#[test]
fn region_aliases_are_case_insensitive() {
    for (alias, region) in [
        ("US", Region::Na),
        ("aws-na", Region::Na),
        ("AWS_EU", Region::Eu),
        ("aws-au", Region::Au),
        ("Azure_NA", Region::AzureNa),
        ("GCP-EU", Region::GcpEu),
    ] {
        assert_eq!(alias.parse::<Region>().unwrap(), region, "{alias}");
    }
    let err = "mars".parse::<Region>().unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::InvalidRegion);
}

#[test]
fn a_custom_base_url_is_a_region() {
    let region: Region = "http://127.0.0.1:9000/".parse().unwrap();
    assert_eq!(
        region.public_keys_url(),
        "http://127.0.0.1:9000/.well-known/public-keys.json"
    );
    assert!("https://".parse::<Region>().is_err());
    assert!("https://host/path".parse::<Region>().is_err());
}

// RSA method

#[test]
fn salt_length_32_is_accepted_and_reported() {
    let body = body();
    let verified = WebhookVerifier::new()
        .verify_with_keys(
            &signed(&body, SaltLength::Digest),
            &body,
            Some(&keys_a()),
            soon(),
        )
        .unwrap();
    assert!(matches!(
        verified.verified_by(),
        VerifiedBy::Rsa {
            salt: SaltLength::Digest,
            ..
        }
    ));
}

#[test]
fn salt_length_max_is_accepted_and_reported() {
    let body = body();
    let verified = WebhookVerifier::new()
        .verify_with_keys(
            &signed(&body, SaltLength::Max),
            &body,
            Some(&keys_a()),
            soon(),
        )
        .unwrap();
    assert!(matches!(
        verified.verified_by(),
        VerifiedBy::Rsa {
            salt: SaltLength::Max,
            ..
        }
    ));
}

#[test]
fn the_raw_body_is_what_is_signed() {
    let body = body();
    let headers = signed(&body, SaltLength::Digest);
    let mut changed = body.clone();
    changed.push(b' ');
    assert_eq!(
        rsa_error(&headers, &changed, soon()),
        ErrorKind::SignatureMismatch
    );
}

#[test]
fn no_signature_header_is_missing_signature() {
    assert_eq!(
        rsa_error(&HeaderMap::new(), &body(), soon()),
        ErrorKind::MissingSignature
    );
}

#[test]
fn the_legacy_signature_header_is_never_trusted() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-contentstack-signature",
        HeaderValue::from_static("da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    );
    assert_eq!(
        rsa_error(&headers, &body(), soon()),
        ErrorKind::MissingSignature
    );
}

#[test]
fn no_v1_element_is_a_rejection() {
    assert_eq!(
        rsa_error(&rsa_headers("v2=abc,sig=def"), &body(), soon()),
        ErrorKind::MalformedSignature
    );
    assert_eq!(
        rsa_error(&rsa_headers("v1=%%%not-base64"), &body(), soon()),
        ErrorKind::MalformedSignature
    );
}

#[test]
fn a_signature_header_of_a_thousand_elements_is_refused_unread() {
    let huge = vec!["v1=AAAA"; 1000].join(",");
    assert_eq!(
        rsa_error(&rsa_headers(&huge), &body(), soon()),
        ErrorKind::MalformedSignature
    );
}

#[test]
fn no_key_is_key_unavailable_not_a_forgery() {
    let body = body();
    let err = WebhookVerifier::new()
        .verify_with_keys(&signed(&body, SaltLength::Digest), &body, None, soon())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyUnavailable);
    assert_eq!(err.kind().code(), "key_unavailable");
}

#[test]
fn a_key_set_accepts_any_of_its_keys_and_says_which() {
    let body = body();
    let rotating = KeySet::parse(&format!("{PUBLIC_B}{PUBLIC_A}")).unwrap();
    let verified = WebhookVerifier::new()
        .verify_with_keys(
            &signed(&body, SaltLength::Digest),
            &body,
            Some(&rotating),
            soon(),
        )
        .unwrap();
    let VerifiedBy::Rsa {
        key_index,
        key_fingerprint,
        ..
    } = verified.verified_by()
    else {
        panic!()
    };
    assert_eq!(*key_index, 1);
    assert_eq!(
        key_fingerprint,
        keys_a().iter().next().unwrap().fingerprint()
    );
}

#[test]
fn the_envelope_is_parsed_from_the_verified_bytes() {
    let body = body();
    let verified = WebhookVerifier::new()
        .verify_with_keys(
            &signed(&body, SaltLength::Digest),
            &body,
            Some(&keys_a()),
            soon(),
        )
        .unwrap();
    assert_eq!(verified.module(), Some(Module::Entry));
    assert_eq!(verified.event(), Some(Event::Create));
    assert_eq!(verified.api_key(), Some("blt1"));
    assert_eq!(verified.signed_at(), at_ms(TRIGGERED_MS));
}

// Freshness

#[test]
fn triggered_at_older_than_the_tolerance_is_expired() {
    let body = body();
    let headers = signed(&body, SaltLength::Digest);
    let verifier = WebhookVerifier::new().with_tolerance(Duration::from_secs(300));
    assert!(
        verifier
            .verify_with_keys(
                &headers,
                &body,
                Some(&keys_a()),
                at_ms(TRIGGERED_MS + 300_000)
            )
            .is_ok()
    );
    let err = verifier
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
                .verify_with_keys(&headers, &body, Some(&keys_a()), at)
                .is_ok(),
            "attempt {attempt} at {elapsed} s"
        );
        let hmac = HmacSecret::new("secret-one")
            .unwrap()
            .sign(&body, at_ms(TRIGGERED_MS));
        assert!(
            hmac_verifier()
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

// JSON fallback

#[test]
fn json_fallback_is_off_by_default_and_hands_on_canonical_bytes_when_on() {
    let canonical = body();
    // What a framework that re-serializes with indentation hands over.
    let text = String::from_utf8(canonical.clone()).unwrap();
    let pretty = text
        .replace("\":", "\": ")
        .replace(",\"", ",\n  \"")
        .into_bytes();
    assert_ne!(pretty, canonical);
    let headers = signed(&canonical, SaltLength::Digest);
    assert_eq!(
        rsa_error(&headers, &pretty, soon()),
        ErrorKind::SignatureMismatch
    );
    let verified = WebhookVerifier::new()
        .with_json_fallback(true)
        .verify_with_keys(&headers, &pretty, Some(&keys_a()), soon())
        .unwrap();
    assert!(verified.reencoded());
    assert_eq!(verified.canonical_body(), Some(canonical.as_slice()));
}

#[test]
fn json_fallback_does_not_rescue_a_different_document() {
    let headers = signed(&body(), SaltLength::Digest);
    let other = body_with("2024-07-25T08:48:46.862Z");
    let err = WebhookVerifier::new()
        .with_json_fallback(true)
        .verify_with_keys(&headers, &other, Some(&keys_a()), soon())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
}

// HMAC method

fn hmac_headers(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-contentstack-hmac-signature",
        HeaderValue::from_str(value).unwrap(),
    );
    headers
}

fn hmac_verifier() -> WebhookVerifier {
    WebhookVerifier::hmac_only(HmacSecret::new("secret-one").unwrap())
}

#[test]
fn hmac_covers_t_dot_body() {
    let body = body();
    let value = HmacSecret::new("secret-one")
        .unwrap()
        .sign(&body, at_ms(TRIGGERED_MS));
    assert!(value.starts_with("t=1721897326,v1="));
    let verified = hmac_verifier()
        .verify_with_keys(&hmac_headers(&value), &body, None, soon())
        .unwrap();
    assert_eq!(
        verified.verified_by(),
        &VerifiedBy::Hmac {
            secret_index: 0,
            element: 0
        }
    );
    assert_eq!(verified.signed_at(), at_ms(1_721_897_326_000));
}

#[test]
fn hmac_t_older_than_the_tolerance_is_expired() {
    let body = body();
    let value = HmacSecret::new("secret-one")
        .unwrap()
        .sign(&body, at_ms(TRIGGERED_MS));
    let late = at_ms(TRIGGERED_MS + 1_801_000);
    let err = hmac_verifier()
        .verify_with_keys(&hmac_headers(&value), &body, None, late)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Expired);
}

#[test]
fn hmac_t_must_be_unix_seconds() {
    let err = hmac_verifier()
        .verify_with_keys(&hmac_headers("t=17e8,v1=00"), &body(), None, soon())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedTimestamp);
}

#[test]
fn hmac_elements_beyond_four_are_not_tried() {
    let body = body();
    let good = HmacSecret::new("secret-one")
        .unwrap()
        .sign(&body, at_ms(TRIGGERED_MS));
    let (t, v1) = good.split_once(',').unwrap();
    let bad = |digit: char| format!("v1={}", digit.to_string().repeat(64));
    let (a, b, c, d) = (bad('1'), bad('2'), bad('3'), bad('4'));
    let fourth = format!("{t},{a},{b},{c},{v1}");
    assert!(
        hmac_verifier()
            .verify_with_keys(&hmac_headers(&fourth), &body, None, soon())
            .is_ok()
    );
    let fifth = format!("{t},{a},{b},{c},{d},{v1}");
    assert_eq!(
        hmac_verifier()
            .verify_with_keys(&hmac_headers(&fifth), &body, None, soon())
            .unwrap_err()
            .kind(),
        ErrorKind::SignatureMismatch
    );
}

#[test]
fn a_key_tries_first_the_salt_length_that_last_verified() {
    let keys = keys_a();
    let key = keys.iter().next().unwrap();
    assert_eq!(key.preferred_salt(), SaltLength::Digest);
    let body = body();
    let verify = |salt| {
        let verified = WebhookVerifier::new()
            .verify_with_keys(&signed(&body, salt), &body, Some(&keys), soon())
            .unwrap();
        let VerifiedBy::Rsa { salt, .. } = verified.verified_by().clone() else {
            panic!("not RSA");
        };
        salt
    };
    assert_eq!(verify(SaltLength::Max), SaltLength::Max);
    assert_eq!(key.preferred_salt(), SaltLength::Max);
    assert_eq!(verify(SaltLength::Max), SaltLength::Max);
    assert_eq!(verify(SaltLength::Digest), SaltLength::Digest);
    assert_eq!(key.preferred_salt(), SaltLength::Digest);
}

/// `count` distinct signatures of `body` by a key that is not the verifier's.
fn forged(body: &[u8], count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            signer(KEY_B)
                .sign_webhook(body, SaltLength::Digest)
                .unwrap()
        })
        .collect()
}

#[test]
fn rsa_elements_beyond_four_distinct_are_not_tried() {
    let body = body();
    let good = signer(KEY_A)
        .sign_webhook(&body, SaltLength::Digest)
        .unwrap();
    let verify = |forgeries: &[String]| {
        let header = format!("{},{good}", forgeries.join(","));
        WebhookVerifier::new().verify_with_keys(
            &rsa_headers(&header),
            &body,
            Some(&keys_a()),
            soon(),
        )
    };
    let three = forged(&body, 3);
    let VerifiedBy::Rsa { element, .. } = verify(&three).unwrap().verified_by().clone() else {
        panic!("not RSA");
    };
    assert_eq!(element, 3);
    assert_eq!(
        verify(&forged(&body, 4)).unwrap_err().kind(),
        ErrorKind::SignatureMismatch
    );
}

#[test]
fn repeated_rsa_elements_count_once_toward_the_cap() {
    let body = body();
    let good = signer(KEY_A)
        .sign_webhook(&body, SaltLength::Digest)
        .unwrap();
    let forgery = forged(&body, 1).remove(0);
    let unpadded = forgery.trim_end_matches('=');
    let header = format!("{forgery},{unpadded},{forgery},{forgery},{forgery},{good}");
    let verified = WebhookVerifier::new()
        .verify_with_keys(&rsa_headers(&header), &body, Some(&keys_a()), soon())
        .unwrap();
    let VerifiedBy::Rsa { element, .. } = verified.verified_by().clone() else {
        panic!("not RSA");
    };
    assert_eq!(element, 1);
}

#[test]
fn repeated_hmac_elements_count_once_toward_the_cap() {
    let body = body();
    let good = HmacSecret::new("secret-one")
        .unwrap()
        .sign(&body, at_ms(TRIGGERED_MS));
    let (t, v1) = good.split_once(',').unwrap();
    let bad = format!("v1={}", "0".repeat(64));
    let repeated = format!("{t},{bad},{bad},{bad},{bad},{bad},{v1}");
    let verified = hmac_verifier()
        .verify_with_keys(&hmac_headers(&repeated), &body, None, soon())
        .unwrap();
    assert_eq!(
        verified.verified_by(),
        &VerifiedBy::Hmac {
            secret_index: 0,
            element: 1
        }
    );
}

#[test]
fn an_hmac_only_verifier_ignores_rsa_signatures_and_says_so() {
    let body = body();
    let err = hmac_verifier()
        .verify_with_keys(
            &signed(&body, SaltLength::Digest),
            &body,
            Some(&keys_a()),
            soon(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MethodNotConfigured);
    assert_eq!(err.kind().code(), "signature_method_not_configured");
}

#[test]
fn hmac_is_used_when_configured_and_present() {
    let body = body();
    let mut headers = signed(&body, SaltLength::Digest);
    let value = HmacSecret::new("secret-one")
        .unwrap()
        .sign(&body, at_ms(TRIGGERED_MS));
    headers.insert(
        "x-contentstack-hmac-signature",
        HeaderValue::from_str(&value).unwrap(),
    );
    let both = WebhookVerifier::new().with_hmac_secret(HmacSecret::new("secret-one").unwrap());
    let verified = both
        .verify_with_keys(&headers, &body, None, soon())
        .unwrap();
    assert!(matches!(verified.verified_by(), VerifiedBy::Hmac { .. }));
}

#[test]
fn an_empty_hmac_secret_is_a_configuration_error() {
    assert_eq!(
        HmacSecret::new(" ").unwrap_err().kind(),
        ConfigErrorKind::InvalidSecret
    );
}

// App-tokens

fn claims() -> serde_json::Value {
    json!({
        "app_uid": "app", "installation_uid": "inst", "organization_uid": "org",
        "user_uid": "user", "stack_api_key": "blt1", "custom": {"x": 1}
    })
}

#[test]
fn a_minted_app_token_verifies_with_its_claims() {
    let now = at_ms(TRIGGERED_MS);
    let token = mint_app_token(&signer(KEY_A), &claims(), now, Duration::from_secs(300)).unwrap();
    let verified = AppTokenVerifier::new()
        .verify(&token, &keys_a(), now)
        .unwrap();
    assert_eq!(verified.organization_uid, "org");
    assert_eq!(verified.stack_api_key.as_deref(), Some("blt1"));
    assert_eq!(verified.other["custom"], json!({"x": 1}));
    assert_eq!(verified.exp, TRIGGERED_MS / 1000 + 300);
}

#[test]
fn app_token_leeway_is_configurable() {
    let minted = at_ms(TRIGGERED_MS);
    let token = mint_app_token(&signer(KEY_A), &claims(), minted, Duration::from_secs(10)).unwrap();
    let later = at_ms(TRIGGERED_MS + 40_000);
    assert!(
        AppTokenVerifier::new()
            .verify(&token, &keys_a(), later)
            .is_ok()
    );
    let strict = AppTokenVerifier::new().with_leeway(Duration::ZERO);
    assert_eq!(
        strict.verify(&token, &keys_a(), later).unwrap_err().kind(),
        AppTokenErrorKind::Expired
    );
}

#[test]
fn app_token_algorithm_is_pinned_but_configurable() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("data/contentstack-vectors.json")).unwrap();
    let rs512 = v["app_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rs512")
        .unwrap();
    let token = rs512["token"].as_str().unwrap();
    let now = at_ms(v["now_ms"].as_u64().unwrap());
    assert_eq!(
        AppTokenVerifier::new()
            .verify(token, &keys_a(), now)
            .unwrap_err()
            .kind(),
        AppTokenErrorKind::WrongAlgorithm
    );
    let rs512_ok = AppTokenVerifier::new()
        .with_algorithms([AppTokenAlgorithm::Rs512])
        .unwrap();
    assert!(rs512_ok.verify(token, &keys_a(), now).is_ok());
    assert!(AppTokenVerifier::new().with_algorithms([]).is_err());
}

#[test]
fn app_token_with_a_rotating_key_set() {
    let now = at_ms(TRIGGERED_MS);
    let token = mint_app_token(&signer(KEY_A), &claims(), now, Duration::from_secs(300)).unwrap();
    let rotating = KeySet::parse(&format!("{PUBLIC_B}{PUBLIC_A}")).unwrap();
    assert!(
        AppTokenVerifier::new()
            .verify(&token, &rotating, now)
            .is_ok()
    );
    let other_only = KeySet::parse(PUBLIC_B).unwrap();
    assert_eq!(
        AppTokenVerifier::new()
            .verify(&token, &other_only, now)
            .unwrap_err()
            .kind(),
        AppTokenErrorKind::BadSignature
    );
}

#[test]
fn app_token_errors_never_show_the_token() {
    let now = at_ms(TRIGGERED_MS);
    let token = mint_app_token(&signer(KEY_A), &claims(), now, Duration::from_secs(1)).unwrap();
    let err = AppTokenVerifier::new()
        .with_leeway(Duration::ZERO)
        .verify(&token, &keys_a(), at_ms(TRIGGERED_MS + 5_000))
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(&token[..20]));
}

// Delivery identity (spec section 7)

fn rsa_key(headers: &HeaderMap, body: &[u8]) -> ReplayKey {
    WebhookVerifier::new()
        .verify_with_keys(headers, body, Some(&keys_a()), soon())
        .unwrap()
        .replay_key()
}

fn hmac_key(value: &str, body: &[u8], verifier: &WebhookVerifier) -> ReplayKey {
    verifier
        .verify_with_keys(&hmac_headers(value), body, None, soon())
        .unwrap()
        .replay_key()
}

fn first_element(headers: &HeaderMap) -> String {
    headers["x-contentstack-request-signature"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_delivery_re_signed_is_the_same_delivery() {
    let body = body();
    let first = rsa_key(&signed(&body, SaltLength::Digest), &body);
    let resigned = signed(&body, SaltLength::Digest);
    assert_ne!(
        first_element(&resigned),
        first_element(&signed(&body, SaltLength::Digest)),
        "RSA-PSS is randomized"
    );
    assert_eq!(rsa_key(&resigned, &body), first);
    assert_eq!(
        rsa_key(&signed(&body, SaltLength::Max), &body),
        first,
        "the other salt length"
    );
    let other = body_with("2024-07-25T08:48:46.862Z");
    assert_ne!(
        rsa_key(&signed(&other, SaltLength::Digest), &other),
        first,
        "another triggered_at is another delivery"
    );
}

#[test]
fn more_fewer_or_reordered_elements_are_the_same_delivery() {
    let body = body();
    let good = first_element(&signed(&body, SaltLength::Digest));
    let other_good = first_element(&signed(&body, SaltLength::Max));
    let foreign = signer(KEY_B)
        .sign_webhook(&body, SaltLength::Digest)
        .unwrap();
    let key = rsa_key(&rsa_headers(&good), &body);
    for value in [
        format!("{foreign},{good}"),
        format!("{good},{foreign}"),
        format!("{other_good}, {good}"),
        format!("v0=abc,{good}"),
    ] {
        assert_eq!(rsa_key(&rsa_headers(&value), &body), key, "{value:.12}");
    }
}

#[test]
fn padded_and_unpadded_base64_are_the_same_delivery() {
    let body = body();
    let padded = first_element(&signed(&body, SaltLength::Digest));
    assert!(padded.ends_with('='), "RSA-2048 base64 ends in padding");
    let unpadded = padded.trim_end_matches('=');
    assert_eq!(
        rsa_key(&rsa_headers(unpadded), &body),
        rsa_key(&rsa_headers(&padded), &body)
    );
}

#[test]
fn hmac_rotation_elements_and_a_fresh_t_are_the_same_delivery_as_rsa() {
    let body = body();
    let (one, two) = (
        HmacSecret::new("secret-one").unwrap(),
        HmacSecret::new("secret-two").unwrap(),
    );
    let verifier = hmac_verifier().with_hmac_secret(two.clone());
    let at = at_ms(TRIGGERED_MS);
    let old = one.sign(&body, at);
    let new = two.sign(&body, at);
    let (t, old_v1) = old.split_once(',').unwrap();
    let new_v1 = new.split_once(',').unwrap().1;
    let key = hmac_key(&old, &body, &verifier);
    assert_eq!(
        hmac_key(&format!("{t},{old_v1},{new_v1}"), &body, &verifier),
        key
    );
    assert_eq!(
        hmac_key(&format!("{t},{new_v1},{old_v1}"), &body, &verifier),
        key
    );
    assert_eq!(hmac_key(&new, &body, &verifier), key, "one element dropped");
    let resent = one.sign(&body, at_ms(TRIGGERED_MS + 5_000));
    assert_eq!(hmac_key(&resent, &body, &verifier), key, "a fresh t");
    assert_eq!(
        rsa_key(&signed(&body, SaltLength::Digest), &body),
        key,
        "the same body, signed by the other method"
    );
}

#[test]
fn the_json_fallback_identifies_the_delivery_by_its_canonical_bytes() {
    let body = body();
    let headers = signed(&body, SaltLength::Digest);
    // What a platform that re-encodes JSON hands over: the same value, other bytes.
    let pretty = String::from_utf8(body.clone())
        .unwrap()
        .replace(",\"", ",\n  \"")
        .into_bytes();
    let reencoded = WebhookVerifier::new()
        .with_json_fallback(true)
        .verify_with_keys(&headers, &pretty, Some(&keys_a()), soon())
        .unwrap();
    assert!(reencoded.reencoded());
    assert_eq!(reencoded.replay_key(), rsa_key(&headers, &body));
    assert_eq!(reencoded.delivery_id(), reencoded.replay_key().to_hex());
    assert_eq!(reencoded.delivery_id().len(), 64);
}

/// `a + b` of two big-endian numbers of one length; `None` when the sum needs another byte.
fn add_be(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    let mut sum = vec![0u8; a.len()];
    let mut carry = 0u16;
    for i in (0..a.len()).rev() {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        sum[i] = (s & 0xff) as u8;
        carry = s >> 8;
    }
    (carry == 0).then_some(sum)
}

fn modulus_a() -> Vec<u8> {
    use pkcs1::der::Decode as _;
    let block = pem::parse(PUBLIC_A.trim()).unwrap();
    let key = pkcs1::RsaPublicKey::from_der(block.contents()).unwrap();
    let modulus = key.modulus.as_bytes();
    modulus[modulus.iter().take_while(|b| **b == 0).count()..].to_vec()
}

#[test]
fn a_signature_value_at_or_above_the_modulus_is_refused() {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let n = modulus_a();
    assert_eq!(n.len(), 256);
    let body = body();
    // s + n fits in 256 bytes for some signings s (when s < 2^2048 - n): sign until one does.
    let (s, s_plus_n) = (0..200)
        .find_map(|_| {
            let s = engine
                .decode(first_element(&signed(&body, SaltLength::Digest)).trim_start_matches("v1="))
                .unwrap();
            add_be(&s, &n).map(|sum| (s, sum))
        })
        .expect("s + n fits the modulus length for about a third of signings");
    let original = rsa_headers(&format!("v1={}", engine.encode(&s)));
    assert!(
        WebhookVerifier::new()
            .verify_with_keys(&original, &body, Some(&keys_a()), soon())
            .is_ok(),
        "s itself verifies"
    );
    for value in [s_plus_n, n.clone()] {
        let header = rsa_headers(&format!("v1={}", engine.encode(&value)));
        assert_eq!(
            rsa_error(&header, &body, soon()),
            ErrorKind::SignatureMismatch,
            "on the {:?} backend",
            countersign_core::backend()
        );
    }
}

// Binding to this app and its tenants (spec section 8)

fn installation(app_uid: &str, event: &str, stack: &str) -> Vec<u8> {
    format!(
        r#"{{"triggered_at":"2024-07-25T08:48:46.861Z","module":"app_installation","event":"{event}","api_key":"{stack}","data":{{"app_installation":{{"app_uid":"{app_uid}","app_version":1,"organization_uid":"bltorg","installation_uid":"inst","target":{{"type":"stack","uid":"{stack}"}}}}}}}}"#
    )
    .into_bytes()
}

fn verified(body: &[u8]) -> VerifiedWebhook {
    WebhookVerifier::new()
        .verify_with_keys(
            &signed(body, SaltLength::Digest),
            body,
            Some(&keys_a()),
            soon(),
        )
        .unwrap()
}

/// Polls a future that is ready at once.
fn now_or_never<F: std::future::Future>(future: F) -> F::Output {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the check was not ready"),
    }
}

fn tenancy_error<S: StackCheck>(tenancy: &Tenancy<S>, body: &[u8]) -> Option<ErrorKind> {
    now_or_never(tenancy.check(&verified(body)))
        .err()
        .map(|e| e.kind())
}

#[test]
fn installation_events_are_accepted_only_for_this_app() {
    let tenancy = Tenancy::new()
        .with_app_uid("app-ours")
        .with_stacks(StackAllowlist::new(["blt-known"]));
    for event in ["install", "upgrade", "update", "uninstall"] {
        let ours = installation("app-ours", event, "blt-new");
        assert_eq!(verified(&ours).installation_app_uid(), Some("app-ours"));
        assert_eq!(
            tenancy_error(&tenancy, &ours),
            None,
            "{event}: a stack becomes ours by its install"
        );
        assert_eq!(
            tenancy_error(&tenancy, &installation("app-theirs", event, "blt-known")),
            Some(ErrorKind::AppMismatch),
            "{event}"
        );
    }
    let no_app = br#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"app_installation","event":"install","api_key":"blt-known","data":[1,2]}"#;
    assert_eq!(
        tenancy_error(&tenancy, no_app),
        Some(ErrorKind::AppMismatch)
    );
}

#[test]
fn other_deliveries_are_accepted_only_from_our_stacks() {
    let tenancy = Tenancy::new()
        .with_app_uid("app-ours")
        .with_stacks(StackAllowlist::new(["blt1"]));
    assert_eq!(tenancy_error(&tenancy, &body()), None);
    let foreign = br#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","api_key":"blt-other","event":"publish","data":{}}"#;
    assert_eq!(
        tenancy_error(&tenancy, foreign),
        Some(ErrorKind::StackNotAllowed)
    );
    let no_stack = br#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","event":"publish","data":{}}"#;
    assert_eq!(
        tenancy_error(&tenancy, no_stack),
        Some(ErrorKind::StackNotAllowed)
    );
}

#[test]
fn an_async_stack_check_can_answer_or_fail() {
    let tenancy = Tenancy::new().with_stacks(stack_check_fn(|api_key: &str| {
        let answer = match api_key {
            "blt1" => Ok(true),
            "blt-down" => Err(TenantUnavailable::new("the database is down")),
            _ => Ok(false),
        };
        std::future::ready(answer)
    }));
    assert_eq!(tenancy_error(&tenancy, &body()), None);
    let down = br#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","api_key":"blt-down","event":"publish","data":{}}"#;
    assert_eq!(
        tenancy_error(&tenancy, down),
        Some(ErrorKind::TenantCheckUnavailable)
    );
    assert_eq!(
        ErrorKind::TenantCheckUnavailable.code(),
        "tenant_check_unavailable"
    );
    assert_eq!(ErrorKind::StackNotAllowed.code(), "stack_not_allowed");
    assert_eq!(ErrorKind::AppMismatch.code(), "app_uid_mismatch");
}

#[test]
fn an_app_token_of_another_app_is_refused_when_the_app_uid_is_required() {
    let now = at_ms(TRIGGERED_MS);
    let token = mint_app_token(&signer(KEY_A), &claims(), now, Duration::from_secs(300)).unwrap();
    let ours = AppTokenVerifier::new().with_app_uid("app");
    assert_eq!(ours.verify(&token, &keys_a(), now).unwrap().app_uid, "app");
    let err = AppTokenVerifier::new()
        .with_app_uid("another-app")
        .verify(&token, &keys_a(), now)
        .unwrap_err();
    assert_eq!(err.kind(), AppTokenErrorKind::AppMismatch);
    assert_eq!(err.kind().code(), "app_token_app_mismatch");
}

// Building a delivery's body

#[test]
fn a_built_body_has_triggered_at_first_and_to_the_millisecond() {
    use countersign_core::contentstack::WebhookBody;
    let at = UNIX_EPOCH + Duration::from_nanos(1_721_897_326_861_999_999);
    let body = WebhookBody::new("entry", "publish")
        .with_api_key("blt1")
        .with_data(&json!({"z": 1, "a": "é\""}))
        .to_json(at);
    assert_eq!(
        body,
        r#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","event":"publish","api_key":"blt1","data":{"a":"é\"","z":1}}"#
    );
    // What JavaScript would send is what we built: re-serializing changes nothing.
    assert_eq!(
        countersign_core::contentstack::json_reencode(body.as_bytes()).unwrap(),
        body.as_bytes()
    );
    let headers = signed(body.as_bytes(), SaltLength::Digest);
    let verified = WebhookVerifier::new()
        .verify_with_keys(&headers, body.as_bytes(), Some(&keys_a()), at)
        .unwrap();
    assert_eq!(verified.signed_at(), at_ms(TRIGGERED_MS));
    assert_eq!(verified.api_key(), Some("blt1"));
}

// The entry point and the refresh-once key policy

/// A key source that has `stale` keys and, when asked to refresh, `fresh` ones (or none).
struct Rotating {
    stale: std::sync::Arc<KeySet>,
    fresh: Option<std::sync::Arc<KeySet>>,
    refreshes: std::sync::atomic::AtomicUsize,
}

impl countersign_core::contentstack::KeySource for Rotating {
    fn keys(
        &self,
    ) -> impl std::future::Future<
        Output = Result<std::sync::Arc<KeySet>, countersign_core::contentstack::KeyUnavailable>,
    > + Send {
        std::future::ready(Ok(self.stale.clone()))
    }

    fn refresh(
        &self,
        _: &std::sync::Arc<KeySet>,
    ) -> impl std::future::Future<Output = Option<std::sync::Arc<KeySet>>> + Send {
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::ready(self.fresh.clone())
    }
}

fn deliver(
    source: &Rotating,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<countersign_core::Verdict<VerifiedWebhook>, countersign_core::contentstack::Error> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(WebhookVerifier::new().verify(
            headers,
            bytes::Bytes::copy_from_slice(body),
            source,
            &Tenancy::new(),
            now,
        ))
}

#[test]
fn a_signature_by_a_rotated_key_makes_the_source_refresh_once() {
    let body = body();
    let headers = signed(&body, SaltLength::Digest);
    let stale = std::sync::Arc::new(KeySet::parse(PUBLIC_B).unwrap());
    let rotated = Rotating {
        stale: stale.clone(),
        fresh: Some(std::sync::Arc::new(keys_a())),
        refreshes: 0.into(),
    };
    let verdict = deliver(&rotated, &headers, &body, soon()).unwrap();
    assert_eq!(
        rotated.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(verdict.body(), body.as_slice());
    assert_eq!(verdict.tenant(), Some("blt1"));
    assert_eq!(
        verdict.window(),
        Some(DEFAULT_TOLERANCE + Duration::from_secs(60))
    );

    let unchanged = Rotating {
        stale,
        fresh: None,
        refreshes: 0.into(),
    };
    let error = deliver(&unchanged, &headers, &body, soon()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::SignatureMismatch);
    assert_eq!(
        unchanged
            .refreshes
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn a_stale_delivery_does_not_make_the_source_refresh() {
    let body = body();
    let headers = signed(&body, SaltLength::Digest);
    let source = Rotating {
        stale: std::sync::Arc::new(keys_a()),
        fresh: None,
        refreshes: 0.into(),
    };
    let late_by_a_second = at_ms(TRIGGERED_MS) + DEFAULT_TOLERANCE + Duration::from_secs(1);
    let late = deliver(&source, &headers, &body, late_by_a_second).unwrap_err();
    assert_eq!(late.kind(), ErrorKind::Expired);
    assert_eq!(
        source.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn windows_of_any_length_verify_without_overflowing() {
    // Duration::MAX as the tolerance or skew used to overflow the window's sum.
    let verifier = WebhookVerifier::new()
        .with_tolerance(Duration::MAX)
        .with_future_skew(Duration::MAX);
    assert_eq!(
        verifier.acceptance_window(),
        2 * countersign_core::MAX_WINDOW
    );
    let body = body();
    verifier
        .verify_with_keys(
            &signed(&body, SaltLength::Digest),
            &body,
            Some(&keys_a()),
            soon(),
        )
        .unwrap();
    // A year late is within a hundred years' tolerance.
    verifier
        .verify_with_keys(
            &signed(&body, SaltLength::Digest),
            &body,
            Some(&keys_a()),
            soon() + Duration::from_secs(365 * 24 * 3600),
        )
        .unwrap();
    // An app-token with any leeway: a year past its expiry is within a hundred years'.
    let claims = serde_json::json!({"app_uid": "app-1", "installation_uid": "i", "organization_uid": "o", "user_uid": "u", "stack_api_key": "blt1"});
    let token = countersign_core::contentstack::mint_app_token(
        &signer(KEY_A),
        &claims,
        soon(),
        Duration::from_secs(300),
    )
    .unwrap();
    let claims = countersign_core::contentstack::AppTokenVerifier::new()
        .with_leeway(Duration::MAX)
        .verify(
            &token,
            &keys_a(),
            soon() + Duration::from_secs(365 * 24 * 3600),
        )
        .unwrap();
    assert_eq!(claims.app_uid, "app-1");
}
