//! Micro benchmarks of every verification path, on whichever crypto backend this build uses
//! (`cargo bench -p countersign-core` for aws-lc; add
//! `--no-default-features --features rust-crypto` for RustCrypto).

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use countersign_core::contentful::{self, Context, RequestToSign, RequestVerifier, SigningSecret};
use countersign_core::contentstack::{
    AppTokenVerifier, HmacSecret, KeySet, SaltLength, SigningKey, WebhookVerifier, json_reencode,
    mint_app_token,
};
use countersign_core::ip::IpAllowlist;
use countersign_core::session::{SessionKey, Sessions};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

const PRIVATE: &str = include_str!("../tests/data/keys/contentstack-a.private.pem");

/// A webhook-like JSON body of about `len` bytes.
fn json_body(len: usize) -> String {
    let mut entries = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < len {
        let entry = format!(
            r#"{{"uid":"blt{i:016x}","title":"Entry number {i} with ünïcödé","n":{}.5,"tags":["a","b"]}}"#,
            i * 7
        );
        size += entry.len() + 1;
        entries.push(entry);
        i += 1;
    }
    format!(
        r#"{{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","api_key":"blt1","event":"publish","data":{{"entries":[{}]}}}}"#,
        entries.join(",")
    )
}

fn contentful(c: &mut Criterion) {
    let secret = SigningSecret::new("a".repeat(64)).unwrap();
    let verifier = RequestVerifier::new(secret.clone());
    let now = SystemTime::now();
    let mut group = c.benchmark_group("contentful_verify");
    for size in [1024, 64 * 1024] {
        let body = json_body(size);
        let request = RequestToSign::new(Method::POST, "/contentful/webhooks?source=bench")
            .with_header("content-type", "application/json")
            .with_header("x-contentful-topic", "ContentManagement.Entry.publish")
            .with_body(body.as_bytes());
        let signed = contentful::sign(
            &secret,
            &request,
            now,
            &Context {
                space_id: Some("space".into()),
                ..Context::default()
            },
        )
        .unwrap();
        let mut headers = signed.to_header_map().unwrap();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "x-contentful-topic",
            HeaderValue::from_static("ContentManagement.Entry.publish"),
        );
        let mut request = http::Request::post("/contentful/webhooks?source=bench")
            .body(())
            .unwrap();
        *request.headers_mut() = headers;
        let (parts, ()) = request.into_parts();
        let body = bytes::Bytes::from(body);
        group.throughput(Throughput::Bytes(body.len() as u64));
        // The entry point the layer calls, on a buffered request.
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| {
                verifier
                    .verify(&parts, black_box(body.clone()), None, now)
                    .unwrap()
            });
        });
    }
    group.finish();
}

fn rsa_headers(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-contentstack-request-signature",
        HeaderValue::from_str(value).unwrap(),
    );
    headers
}

fn contentstack(c: &mut Criterion) {
    let key = SigningKey::from_pem(PRIVATE).unwrap();
    let keys = KeySet::from(key.public_key().clone());
    let body = json_body(1024);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_721_897_330);
    let verifier = WebhookVerifier::new();
    let mut group = c.benchmark_group("contentstack_rsa_verify");
    for salt in [SaltLength::Digest, SaltLength::Max] {
        let headers = rsa_headers(&key.sign_webhook(body.as_bytes(), salt).unwrap());
        group.bench_function(salt.name(), |b| {
            b.iter(|| {
                verifier
                    .diagnose()
                    .verify_with_keys(&headers, black_box(body.as_bytes()), Some(&keys), now)
                    .unwrap()
            });
        });
    }
    group.finish();

    let secret = HmacSecret::new("bench-secret").unwrap();
    let hmac = WebhookVerifier::hmac_only(secret.clone());
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("x-contentstack-hmac-signature"),
        HeaderValue::from_str(&secret.sign(body.as_bytes(), now)).unwrap(),
    );
    c.bench_function("contentstack_hmac_verify_1k", |b| {
        b.iter(|| {
            hmac.diagnose()
                .verify_with_keys(&headers, black_box(body.as_bytes()), None, now)
                .unwrap()
        });
    });

    let big = json_body(64 * 1024);
    let pretty = big.replace(",\"", ",\n  \"");
    let mut group = c.benchmark_group("json_fallback");
    group.throughput(Throughput::Bytes(pretty.len() as u64));
    group.bench_function("canonicalize_64k", |b| {
        b.iter(|| json_reencode(black_box(pretty.as_bytes())).unwrap())
    });
    group.finish();
}

fn tokens(c: &mut Criterion) {
    let key = SigningKey::from_pem(PRIVATE).unwrap();
    let keys = KeySet::from(key.public_key().clone());
    let now = SystemTime::now();
    let claims = serde_json::json!({
        "app_uid": "app", "installation_uid": "inst", "organization_uid": "org", "user_uid": "user", "stack_api_key": "blt1"
    });
    let token = mint_app_token(&key, &claims, now, Duration::from_secs(300)).unwrap();
    let verifier = AppTokenVerifier::new();
    c.bench_function("app_token_verify", |b| {
        b.iter(|| verifier.verify(black_box(&token), &keys, now).unwrap())
    });

    let sessions = Sessions::new([SessionKey::new([7u8; 32]).unwrap()]);
    let app_claims = verifier.verify(&token, &keys, now).unwrap();
    c.bench_function("session_mint", |b| {
        b.iter(|| sessions.mint(black_box(&app_claims), now).unwrap())
    });
    let (session, _) = sessions.mint(&app_claims, now).unwrap();
    c.bench_function("session_verify", |b| {
        b.iter(|| sessions.verify(black_box(&session), now).unwrap())
    });
}

fn ip(c: &mut Criterion) {
    let mut group = c.benchmark_group("ip_allowlist_lookup");
    for count in [10u32, 10_000] {
        // Every other /24, so that no two networks merge into one range.
        let networks: Vec<String> = (0..count)
            .map(|i| format!("10.{}.{}.0/24", (i >> 7) & 0xff, (i << 1) & 0xff))
            .collect();
        let list = IpAllowlist::new(&networks).unwrap();
        let probe: std::net::IpAddr = "10.0.6.77".parse().unwrap();
        assert!(list.contains(probe));
        group.bench_with_input(BenchmarkId::from_parameter(count), &list, |b, list| {
            b.iter(|| list.contains(black_box(probe)))
        });
    }
    group.finish();
}

criterion_group!(benches, contentful, contentstack, tokens, ip);
criterion_main!(benches);
