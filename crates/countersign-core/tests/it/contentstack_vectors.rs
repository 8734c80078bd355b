//! Vectors that Node's own crypto and the jsonwebtoken npm package produced
//! (`interop/node/contentstack-vectors.mjs` wrote `data/contentstack-vectors.json`).

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use countersign_core::contentstack::{
    AppTokenVerifier, HmacSecret, KeySet, SaltLength, StaticKeys, Tenancy, VerifiedBy,
    WebhookVerifier,
};
use http::{HeaderMap, HeaderValue};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../data/contentstack-vectors.json")).unwrap()
}

fn now(v: &Value) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(v["now_ms"].as_u64().unwrap())
}

fn key_a() -> KeySet {
    KeySet::parse(include_str!("../data/keys/contentstack-a.public.pem")).unwrap()
}

fn headers(name: &'static str, value: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(name, HeaderValue::from_str(value).unwrap());
    map
}

#[test]
fn rsa_vectors() {
    let v = vectors();
    let cases = v["rsa"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let body = case["body"].as_str().unwrap().as_bytes();
        let headers = headers(
            "x-contentstack-request-signature",
            case["header"].as_str().unwrap(),
        );
        let fallback = case["json_fallback"].as_bool().unwrap_or(false);
        let verifier = WebhookVerifier::new().with_json_fallback(fallback);
        // Through the entry point every layer calls, which also says what the handler reads.
        let result = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(verifier.verify(
                &headers,
                bytes::Bytes::copy_from_slice(body),
                &StaticKeys::new(key_a()),
                &Tenancy::new(),
                now(&v),
            ));
        match (&case["expect"]["ok"], &case["expect"]["error"]) {
            (Value::Object(ok), _) => {
                let verified = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let VerifiedBy::Rsa {
                    salt,
                    element,
                    key_index,
                    ..
                } = verified.verified_by().clone()
                else {
                    panic!("{name}: not RSA");
                };
                let expected_salt = if ok["salt"] == "max" {
                    SaltLength::Max
                } else {
                    SaltLength::Digest
                };
                assert_eq!(salt, expected_salt, "{name}");
                assert_eq!(element, ok["element"].as_u64().unwrap() as usize, "{name}");
                assert_eq!(key_index, 0, "{name}");
                assert_eq!(
                    verified.triggered_at(),
                    Some(v["triggered_at"].as_str().unwrap()),
                    "{name}"
                );
                if ok.get("reencoded") == Some(&Value::Bool(true)) {
                    assert!(verified.reencoded(), "{name}");
                    assert_eq!(
                        verified.body(),
                        case["canonical"].as_str().unwrap().as_bytes(),
                        "{name}"
                    );
                } else {
                    assert!(!verified.reencoded(), "{name}");
                    assert_eq!(verified.body(), body, "{name}");
                }
            }
            (_, Value::String(code)) => {
                let err = result.err().unwrap_or_else(|| panic!("{name}: accepted"));
                assert_eq!(err.kind().code(), code, "{name}: {err}");
            }
            _ => panic!("{name}: no expectation"),
        }
    }
}

#[test]
fn hmac_vectors() {
    let v = vectors();
    for case in v["hmac"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let secrets = case["secrets"].as_array().unwrap();
        let mut verifier = WebhookVerifier::new().with_rsa(false);
        for secret in secrets {
            verifier =
                verifier.with_hmac_secret(HmacSecret::new(secret.as_str().unwrap()).unwrap());
        }
        let headers = headers(
            "x-contentstack-hmac-signature",
            case["header"].as_str().unwrap(),
        );
        let body = case["body"].as_str().unwrap().as_bytes();
        let result = verifier
            .diagnose()
            .verify_with_keys(&headers, body, None, now(&v));
        match (&case["expect"]["ok"], &case["expect"]["error"]) {
            (Value::Object(ok), _) => {
                let verified = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    verified.verified_by(),
                    &VerifiedBy::Hmac {
                        secret_index: ok["secret"].as_u64().unwrap() as usize,
                        element: ok["element"].as_u64().unwrap() as usize,
                    },
                    "{name}"
                );
                assert_eq!(
                    verified.event().map(|e| e.to_string()).as_deref(),
                    Some("publish")
                );
            }
            (_, Value::String(code)) => {
                let err = result.err().unwrap_or_else(|| panic!("{name}: accepted"));
                assert_eq!(err.kind().code(), code, "{name}: {err}");
            }
            _ => panic!("{name}: no expectation"),
        }
    }
}

#[test]
fn app_token_vectors() {
    let v = vectors();
    let verifier = AppTokenVerifier::new();
    for case in v["app_tokens"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let result = verifier.verify(case["token"].as_str().unwrap(), &key_a(), now(&v));
        match (&case["expect"]["ok"], &case["expect"]["error"]) {
            (Value::Object(expected), _) => {
                let claims = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let as_json = serde_json::to_value(&claims).unwrap();
                assert_eq!(&as_json, &Value::Object(expected.clone()), "{name}");
                assert_eq!(
                    claims.stack_api_key.as_deref(),
                    expected.get("stack_api_key").and_then(Value::as_str)
                );
            }
            (_, Value::String(code)) => {
                let err = result.err().unwrap_or_else(|| panic!("{name}: accepted"));
                assert_eq!(err.kind().code(), code, "{name}: {err}");
            }
            _ => panic!("{name}: no expectation"),
        }
    }
}
