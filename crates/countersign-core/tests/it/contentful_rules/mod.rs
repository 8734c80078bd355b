//! One test per rule of `shared/spec/contentful.md`, "Verifying" and "Headers".

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use countersign_core::ConfigErrorKind;
use countersign_core::contentful::{
    Context, ErrorKind, RequestKind, RequestToSign, RequestVerifier, SignedHeaders, SigningSecret,
    sign,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

const T0: u64 = 1_700_000_000_000;

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn secret(c: char) -> SigningSecret {
    SigningSecret::new(c.to_string().repeat(64)).unwrap()
}

/// Headers as they arrive: the request's own plus the signed ones.
fn arrived(own: &[(&str, &str)], signed: &SignedHeaders) -> HeaderMap {
    let mut map = HeaderMap::new();
    let mut add = |name: &str, value: &str| {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    };
    for (name, value) in own {
        add(name, value);
    }
    for (name, value) in signed.iter() {
        add(name, value);
    }
    map
}

fn signed_post(path: &str, own: &[(&str, &str)], body: &[u8], context: &Context) -> HeaderMap {
    let mut request = RequestToSign::new(Method::POST, path).with_body(body);
    for (name, value) in own {
        request = request.with_header(name, value);
    }
    arrived(own, &sign(&secret('a'), &request, at(T0), context).unwrap())
}

fn verify(
    headers: &HeaderMap,
) -> Result<countersign_core::contentful::VerifiedRequest, countersign_core::contentful::Error> {
    RequestVerifier::new(secret('a')).diagnose().verify_parts(
        &Method::POST,
        "/hook",
        headers,
        b"{}",
        at(T0 + 1_000),
    )
}

fn kind(headers: &HeaderMap) -> ErrorKind {
    verify(headers).unwrap_err().kind()
}

fn good() -> HeaderMap {
    signed_post("/hook", &[], b"{}", &Context::default())
}

use delivery_identity::reference_hmac_hex;
use entry_point::parts;
use limits::signed_post_at;

mod delivery_identity;
mod entry_point;
mod freshness;
mod header_bytes;
mod headers;
mod limits;
mod prefixes;
mod secrets;
mod signed;
