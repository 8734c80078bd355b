//! HMAC method

use super::*;

pub(crate) fn hmac_headers(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-contentstack-hmac-signature",
        HeaderValue::from_str(value).unwrap(),
    );
    headers
}

pub(crate) fn hmac_verifier() -> WebhookVerifier {
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
        .diagnose()
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
        .diagnose()
        .verify_with_keys(&hmac_headers(&value), &body, None, late)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Expired);
}

#[test]
fn hmac_t_must_be_unix_seconds() {
    let err = hmac_verifier()
        .diagnose()
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
            .diagnose()
            .verify_with_keys(&hmac_headers(&fourth), &body, None, soon())
            .is_ok()
    );
    let fifth = format!("{t},{a},{b},{c},{d},{v1}");
    assert_eq!(
        hmac_verifier()
            .diagnose()
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
            .diagnose()
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
        WebhookVerifier::new().diagnose().verify_with_keys(
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
        .diagnose()
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
        .diagnose()
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
        .diagnose()
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
        .diagnose()
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

#[test]
fn a_stack_no_secret_serves_is_a_mismatch_whose_message_names_the_stack() {
    let body = |stack: &str| {
        format!(
            r#"{{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","event":"publish","api_key":"{stack}","data":{{}}}}"#
        )
        .into_bytes()
    };
    let secret = HmacSecret::new("blt-a's own secret").unwrap();
    let verifier = WebhookVerifier::new()
        .with_rsa(false)
        .with_stack_hmac_secret("blt-a", secret.clone());
    let verify = |body: &[u8], secret: &HmacSecret| {
        let headers = hmac_headers(&secret.sign(body, at_ms(TRIGGERED_MS)));
        verifier
            .diagnose()
            .verify_with_keys(&headers, body, None, soon())
    };

    // Signed with the right secret, but for another stack: the secret is not tried.
    let err = verify(&body("blt-b"), &secret).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
    assert!(
        err.message()
            .contains(r#"no HMAC secret is bound to stack "blt-b": 1 secret(s) are bound to other stacks and were not tried"#),
        "{}",
        err.message()
    );
    // A stack named at length is shown bounded.
    let long = format!("blt-{}", "x".repeat(500));
    let err = verify(&body(&long), &secret).unwrap_err();
    assert!(err.message().len() < 300, "{}", err.message());
    // Its own stack with a wrong secret: the plain mismatch, which names no stack.
    let err = verify(&body("blt-a"), &HmacSecret::new("a guess").unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
    assert!(
        !err.message().contains("bound to stack"),
        "{}",
        err.message()
    );
    assert!(verify(&body("blt-a"), &secret).is_ok());
}
