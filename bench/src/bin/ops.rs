//! Operations per second of countersign's verifiers on fixed inputs, which it also writes to a
//! file so that the peers (Node's toolkit, crypto and jsonwebtoken) measure the very same.
//!
//! `ops <inputs.json> [seconds]`: prints one JSON object of operations per second.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use countersign::contentful::{self, Context, RequestToSign, RequestVerifier, SigningSecret};
use countersign::contentstack::{
    AppTokenVerifier, KeySet, SaltLength, SigningKey, WebhookVerifier, mint_app_token,
};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::json;

const PRIVATE: &str =
    include_str!("../../../crates/countersign-core/tests/data/keys/contentstack-a.private.pem");
const PUBLIC: &str =
    include_str!("../../../crates/countersign-core/tests/data/keys/contentstack-a.public.pem");
const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn body(len: usize) -> String {
    let filler = "x".repeat(len.saturating_sub(80));
    format!(
        r#"{{"triggered_at":"2030-01-01T00:00:00.000Z","event":"publish","data":{{"text":"{filler}"}}}}"#
    )
}

/// Runs `op` for `seconds`; returns operations per second.
fn rate(seconds: f64, mut op: impl FnMut()) -> f64 {
    for _ in 0..100 {
        op();
    }
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..32 {
            op();
        }
        count += 32;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let inputs_path = args.get(1).expect("usage: ops <inputs.json> [seconds]");
    let seconds: f64 = args.get(2).map_or(2.0, |s| s.parse().unwrap());
    let now = SystemTime::now();

    // Contentful: the same request for us and the toolkit.
    let secret = SigningSecret::new(SECRET).unwrap();
    let verifier = RequestVerifier::new(secret.clone()).with_ttl(Duration::ZERO);
    let mut contentful_cases = Vec::new();
    let mut contentful_inputs = serde_json::Map::new();
    for (name, size) in [("1k", 1024), ("64k", 64 * 1024)] {
        let body = body(size);
        let request = RequestToSign::new(Method::POST, "/webhook")
            .with_header("content-type", "application/json")
            .with_body(body.as_bytes());
        let signed = contentful::sign(&secret, &request, now, &Context::default())
            .expect("the header values move no boundary");
        let mut headers = signed.to_header_map().unwrap();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let header_json: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().into()))
            .collect();
        contentful_inputs.insert(
            name.to_owned(),
            json!({"path": "/webhook", "body": body.clone(), "headers": header_json}),
        );
        // The bytes the HMAC covers, for `openssl speed -hmac` over as many.
        let timestamp: u64 = headers[contentful::TIMESTAMP]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let signed_headers = [("content-type", "application/json")];
        let canonical_len = contentful::canonical_string(
            "POST",
            "/webhook",
            &signed_headers,
            body.as_bytes(),
            timestamp,
        )
        .len();
        let mut request = http::Request::post("/webhook").body(()).unwrap();
        *request.headers_mut() = headers;
        let (parts, ()) = request.into_parts();
        contentful_cases.push((name, bytes::Bytes::from(body), parts, canonical_len));
    }

    // Contentstack RSA and the app-token.
    let key = SigningKey::from_pem(PRIVATE).unwrap();
    let keys = KeySet::parse(PUBLIC).unwrap();
    let cs_body = body(1024);
    let signature = key
        .sign_webhook(cs_body.as_bytes(), SaltLength::Digest)
        .unwrap();
    let signature_max = key
        .sign_webhook(cs_body.as_bytes(), SaltLength::Max)
        .unwrap();
    let rsa_headers = |signature: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(
            countersign::contentstack::RSA_SIGNATURE_HEADER,
            HeaderValue::from_str(signature).unwrap(),
        );
        headers
    };
    let claims = json!({"app_uid": "a", "installation_uid": "i", "organization_uid": "o", "user_uid": "u", "stack_api_key": "blt1"});
    let token = mint_app_token(&key, &claims, now, Duration::from_secs(3600)).unwrap();

    let inputs = json!({
        "secret": SECRET,
        "contentful": contentful_inputs,
        "contentstack": {"body": cs_body, "signature": signature, "signature_max": signature_max, "public_pem": PUBLIC},
        "app_token": token,
    });
    std::fs::write(inputs_path, inputs.to_string()).unwrap();

    let mut results = serde_json::Map::new();
    // Contentful through the entry point the layer calls, on the buffered request.
    for (name, body, parts, canonical_len) in &contentful_cases {
        let ops = rate(seconds, || {
            verifier
                .verify(parts, black_box(body.clone()), None, now)
                .unwrap();
        });
        results.insert(format!("contentful_verify_{name}"), ops.into());
        results.insert(
            format!("contentful_canonical_bytes_{name}"),
            (*canonical_len).into(),
        );
    }
    // Contentstack's signature check, in the steady state: each key has seen the salt length
    // before (the warm-up of `rate`).
    let webhook_verifier = WebhookVerifier::new();
    for (row, signature) in [("", &signature), ("_max", &signature_max)] {
        let keys = KeySet::parse(PUBLIC).unwrap();
        let headers = rsa_headers(signature);
        let ops = rate(seconds, || {
            webhook_verifier
                .diagnose()
                .rsa_signature(&headers, black_box(cs_body.as_bytes()), &keys)
                .unwrap();
        });
        results.insert(format!("contentstack_rsa_verify{row}"), ops.into());
    }
    let app_tokens = AppTokenVerifier::new();
    let ops = rate(seconds, || {
        app_tokens.verify(black_box(&token), &keys, now).unwrap();
    });
    results.insert("app_token_verify".into(), ops.into());
    results.insert(
        "backend".into(),
        format!("{:?}", countersign::backend()).into(),
    );
    println!("{}", serde_json::Value::Object(results));
}
