//! One test per rule of `shared/spec/contentstack.md`: keys, regions, both webhook methods,
//! freshness and app-tokens.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

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

const KEY_A: &str = include_str!("../../data/keys/contentstack-a.private.pem");
const KEY_A_PKCS1: &str = include_str!("../../data/keys/contentstack-a.pkcs1-private.pem");
const KEY_B: &str = include_str!("../../data/keys/contentstack-b.private.pem");
const PUBLIC_A: &str = include_str!("../../data/keys/contentstack-a.public.pem");
const SPKI_A: &str = include_str!("../../data/keys/contentstack-a.spki.pem");
const JSON_A: &str = include_str!("../../data/keys/contentstack-a.public-keys.json");
const PUBLIC_B: &str = include_str!("../../data/keys/contentstack-b.public.pem");

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
        .diagnose()
        .verify_with_keys(headers, body, Some(&keys_a()), now)
        .unwrap_err()
        .kind()
}

use app_tokens::claims;
use hmac::{hmac_headers, hmac_verifier};

mod app_tokens;
mod body;
mod delivery_identity;
mod entry_point;
mod freshness;
mod hmac;
mod json_fallback;
mod keys;
mod regions;
mod rsa;
mod tenancy;
