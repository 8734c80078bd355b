//! The 16 vectors `@contentful/node-apps-toolkit` 3.16.1 produced (`data/contentful-vectors.json`,
//! a copy of `shared/spec/contentful-vectors.json`): we sign to the same headers and canonical
//! string, and verify what the toolkit signed.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use countersign_core::contentful::{
    Context, RequestToSign, RequestVerifier, SigningSecret, canonical_string, sign,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    secret: String,
    timestamp: u64,
    request: Request,
    #[serde(default)]
    context: BTreeMap<String, String>,
    expected_headers: BTreeMap<String, String>,
    canonical_string: String,
}

#[derive(Deserialize)]
struct Request {
    method: String,
    path: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    body: Option<String>,
}

fn vectors() -> Vec<Vector> {
    // Headers are an object in the file; keep their order by reading them as pairs.
    let text = include_str!("../data/contentful-vectors.json");
    let mut raw: serde_json::Value = serde_json::from_str(text).unwrap();
    for v in raw["vectors"].as_array_mut().unwrap() {
        if let Some(headers) = v["request"].get("headers").cloned() {
            let pairs: Vec<(String, String)> = headers
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            v["request"]["headers"] = serde_json::to_value(pairs).unwrap();
        }
    }
    let file: File = serde_json::from_value(raw).unwrap();
    assert_eq!(file.vectors.len(), 16, "the spec ships 16 vectors");
    file.vectors
}

fn context(v: &Vector) -> Context {
    let get = |key: &str| v.context.get(key).cloned();
    Context {
        space_id: get("spaceId"),
        environment_id: get("envId"),
        app_id: get("appId"),
        user_id: get("userId"),
        crn: get("crn"),
    }
}

#[test]
fn we_sign_every_vector_to_the_toolkits_headers() {
    for v in vectors() {
        let secret = SigningSecret::new(v.secret.clone()).unwrap();
        let method = Method::from_bytes(v.request.method.as_bytes()).unwrap();
        let mut request = RequestToSign::new(method, &v.request.path);
        for (name, value) in &v.request.headers {
            request = request.with_header(name, value);
        }
        if let Some(body) = &v.request.body {
            request = request.with_body(body.as_bytes());
        }
        let at = UNIX_EPOCH + Duration::from_millis(v.timestamp);
        let signed = sign(&secret, &request, at, &context(&v)).unwrap();
        let got: BTreeMap<String, String> = signed
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(got, v.expected_headers, "vector {}", v.name);
    }
}

#[test]
fn our_canonical_string_is_the_toolkits() {
    for v in vectors() {
        // The context headers are signed as headers; add them as the toolkit does.
        let mut headers: Vec<(&str, &str)> = v
            .request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        for (name, value) in &v.expected_headers {
            if !matches!(
                name.as_str(),
                "x-contentful-signature" | "x-contentful-signed-headers" | "x-contentful-timestamp"
            ) {
                headers.push((name, value));
            }
        }
        let body = v.request.body.as_deref().unwrap_or_default();
        let canonical = canonical_string(
            &v.request.method,
            &v.request.path,
            &headers,
            body.as_bytes(),
            v.timestamp,
        );
        assert_eq!(
            String::from_utf8(canonical).unwrap(),
            v.canonical_string,
            "vector {}",
            v.name
        );
    }
}

#[test]
fn we_verify_every_request_the_toolkit_signed() {
    for v in vectors() {
        // What arrives over HTTP: the request's headers (names as a server sees them) and the
        // signed headers the toolkit returned.
        let mut headers = HeaderMap::new();
        let sent = v.request.headers.iter().map(|(n, v)| (n, v));
        for (name, value) in sent.chain(&v.expected_headers) {
            let name = HeaderName::from_bytes(name.trim().as_bytes()).unwrap();
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        }
        let method = Method::from_bytes(v.request.method.as_bytes()).unwrap();
        let body = v.request.body.as_deref().unwrap_or_default();
        let now = UNIX_EPOCH + Duration::from_millis(v.timestamp + 1_000);
        let verifier = RequestVerifier::new(SigningSecret::new(v.secret.clone()).unwrap());
        let path = &v.request.path;
        let verified = verifier
            .diagnose()
            .verify_parts(&method, path, &headers, body.as_bytes(), now)
            .unwrap_or_else(|e| panic!("vector {}: {e}", v.name));
        assert_eq!(verified.context(), context(&v), "vector {}", v.name);
        assert_eq!(verified.timestamp_ms(), v.timestamp);
        // And one byte of body more is a mismatch.
        let forged = verifier.diagnose().verify_parts(
            &method,
            path,
            &headers,
            format!("{body} ").as_bytes(),
            now,
        );
        assert!(forged.is_err(), "vector {}", v.name);
    }
}
