//! The fuzz targets, independent of the harness: each takes arbitrary bytes, feeds them to one
//! parser that sees an attacker's bytes, and checks what must hold. A panic is a finding.
//!
//! Inputs are split into fields at NUL bytes (`field(data, n)`), so that a seed stays readable
//! text and the fuzzer can grow each field apart.

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use countersign_core::contentful::{RequestVerifier, SigningSecret};
use countersign_core::contentstack::{AppTokenVerifier, HmacSecret, KeySet, WebhookVerifier};
use countersign_core::credentials::{BasicAuth, RequiredHeaders};
use countersign_core::ip::{ForwardedHeader, IpAllowlist, client_ip};
use countersign_core::session::{SessionKey, Sessions};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// The captured-request reader of `countersign inspect`, compiled here from its source.
#[allow(dead_code, unreachable_pub, clippy::all)]
#[path = "../../crates/countersign-cli/src/inspect/http.rs"]
mod inspect;

const PUBLIC_PEM: &str =
    include_str!("../../crates/countersign-core/tests/data/keys/contentstack-a.public.pem");

/// A fixed clock: 2024-07-25, near the seeds' timestamps.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_721_897_328_000)
}

/// The `n`th NUL-separated field of `data` (empty when there are fewer).
fn field(data: &[u8], n: usize) -> &[u8] {
    data.split(|b| *b == 0).nth(n).unwrap_or_default()
}

/// `Name: value` lines as a header map; lines that are not a valid header are skipped.
fn headers(block: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in block.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            && map.try_append(name, value).is_err()
        {
            break;
        }
    }
    map
}

/// Contentstack's RSA and HMAC signature headers, the envelope and the JSON fallback.
/// Fields: header block, body.
pub fn contentstack_webhook(data: &[u8]) {
    static VERIFIER: LazyLock<(WebhookVerifier, KeySet)> = LazyLock::new(|| {
        let verifier = WebhookVerifier::new()
            .with_hmac_secret(HmacSecret::new("fuzz-hmac-secret").expect("a valid secret"))
            .with_json_fallback(true);
        (verifier, KeySet::parse(PUBLIC_PEM).expect("the test key"))
    });
    let (verifier, keys) = &*VERIFIER;
    let (headers, body) = (headers(field(data, 0)), field(data, 1));
    // Nothing arbitrary verifies; what matters is that nothing panics.
    let _ = verifier.diagnose().verify_with_keys(&headers, body, Some(keys), now());
}

/// Contentful's verifier and canonicalizer, the signed-headers list included.
/// Fields: method, request target, header block, body.
pub fn contentful_request(data: &[u8]) {
    static VERIFIER: LazyLock<RequestVerifier> = LazyLock::new(|| {
        RequestVerifier::new(SigningSecret::new("a".repeat(64)).expect("a valid secret"))
            .with_ttl(Duration::ZERO)
    });
    let Ok(method) = Method::from_bytes(field(data, 0)) else {
        return;
    };
    let Ok(target) = std::str::from_utf8(field(data, 1)) else {
        return;
    };
    let headers = headers(field(data, 2));
    let _ = VERIFIER.diagnose().verify_parts(&method, target, &headers, field(data, 3), now());
    let _ = countersign_core::contentful::canonical_string(
        method.as_str(),
        target,
        &headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
            .collect::<Vec<_>>(),
        field(data, 3),
        1_721_897_328_000,
    );
}

/// `JSON.stringify(JSON.parse(text))`: arbitrary bytes never panic, and what it outputs parses
/// back to itself (stringify of the same value).
pub fn json_stringify(data: &[u8]) {
    use countersign_core::fuzzing::json_stringify_parse;
    if let Some(out) = json_stringify_parse(data) {
        assert_eq!(
            json_stringify_parse(&out).as_deref(),
            Some(out.as_slice()),
            "the output does not re-parse to the same value"
        );
    }
}

/// Forwarding headers and client-address resolution behind a trusted proxy.
/// Fields: X-Forwarded-For, Forwarded, X-Real-IP values.
pub fn forwarded(data: &[u8]) {
    static TRUSTED: LazyLock<IpAllowlist> =
        LazyLock::new(|| IpAllowlist::new(["10.0.0.0/8", "::1"]).expect("valid networks"));
    let mut map = HeaderMap::new();
    for (name, n) in [("x-forwarded-for", 0), ("forwarded", 1), ("x-real-ip", 2)] {
        if let Ok(value) = HeaderValue::from_bytes(field(data, n)) {
            map.append(name, value);
        }
    }
    let peer: IpAddr = "10.0.0.1".parse().expect("an address");
    for source in [
        ForwardedHeader::XForwardedFor,
        ForwardedHeader::Forwarded,
        ForwardedHeader::XRealIp,
    ] {
        let _ = client_ip(peer, &map, &TRUSTED, source);
    }
}

/// Basic auth and the required custom headers. Fields: Authorization value, X-Hook-Token value.
pub fn credentials(data: &[u8]) {
    static CHECKS: LazyLock<(BasicAuth, RequiredHeaders)> = LazyLock::new(|| {
        (
            BasicAuth::new(["hook:s3cret", "other:pässwörd"]).expect("valid pairs"),
            RequiredHeaders::new()
                .with_header("X-Hook-Token", ["t0ken"])
                .expect("a valid header"),
        )
    });
    let (basic, required) = &*CHECKS;
    let mut map = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(field(data, 0)) {
        map.insert("authorization", value);
    }
    if let Ok(value) = HeaderValue::from_bytes(field(data, 1)) {
        map.insert("x-hook-token", value);
    }
    let _ = basic.check(&map);
    let _ = required.check(&map);
}

/// App-tokens (RS256 JWTs) and the app's session tokens, as text and as a cookie; the event
/// names of typed events (which must give back the text they were read from); the answer of
/// Contentful's access token exchange.
/// Fields: token, Cookie value, event name, exchange answer body.
pub fn tokens(data: &[u8]) {
    static PARTS: LazyLock<(AppTokenVerifier, KeySet, Sessions)> = LazyLock::new(|| {
        (
            AppTokenVerifier::new(),
            KeySet::parse(PUBLIC_PEM).expect("the test key"),
            Sessions::new([SessionKey::new([7u8; 32]).expect("a valid key")]),
        )
    });
    let (verifier, keys, sessions) = &*PARTS;
    if let Ok(token) = std::str::from_utf8(field(data, 0)) {
        let _ = verifier.verify(token, keys, now());
        let _ = sessions.verify(token, now());
    }
    let mut map = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(field(data, 1)) {
        map.insert("cookie", value.clone());
        map.insert("authorization", value);
    }
    let _ = sessions.authenticate(&Method::POST, &map, now());

    if let Ok(name) = std::str::from_utf8(field(data, 2)) {
        use countersign_core::{contentful::Topic, contentstack};
        assert_eq!(contentstack::Module::parse(name).as_str(), name);
        assert_eq!(contentstack::Event::parse(name).as_str(), name);
        assert_eq!(Topic::parse(name).as_str(), name);
    }
    let answer = field(data, 3);
    let mut map = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(field(data, 2)) {
        map.insert("retry-after", value.clone());
        map.insert("x-contentful-ratelimit-reset", value);
    }
    for status in [201, 403, 429, 503] {
        let status = http::StatusCode::from_u16(status).expect("a status");
        let _ =
            countersign_core::contentful::app_identity::read_answer(status, &map, answer, now());
    }
}

/// The raw HTTP/1.1 reader of `countersign inspect`. The whole input is the request.
pub fn inspect_http(data: &[u8]) {
    let _ = inspect::parse_request(data);
}

#[cfg(test)]
mod tests {
    /// Every target over its committed seeds: the smoke that runs on stable, without a fuzzer.
    #[test]
    fn every_target_takes_its_seeds() {
        let targets: [(&str, fn(&[u8])); 7] = [
            ("contentstack_webhook", super::contentstack_webhook),
            ("contentful_request", super::contentful_request),
            ("json_stringify", super::json_stringify),
            ("forwarded", super::forwarded),
            ("credentials", super::credentials),
            ("tokens", super::tokens),
            ("inspect_http", super::inspect_http),
        ];
        for (name, target) in targets {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("seeds")
                .join(name);
            let seeds: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .collect();
            assert!(!seeds.is_empty(), "{name} has no seeds");
            for seed in seeds {
                target(&std::fs::read(seed.expect("a seed").path()).expect("readable"));
            }
        }
    }
}
