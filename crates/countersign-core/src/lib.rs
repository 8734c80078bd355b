//! Wire formats and cryptography of the request signatures that Contentstack and Contentful
//! put on the requests they send to your backend.
//!
//! This crate is pure: it takes `http` types, bytes and the current time, and returns a typed
//! verdict. It has no async runtime and no web framework; the `countersign` crate wraps it in
//! Tower layers and axum extractors, and the `countersign` command line uses it to sign,
//! verify and diagnose requests. Every rule of a wire format lives here, once.
//!
//! # Contentful
//!
//! [`contentful`] signs and verifies requests exactly as `@contentful/node-apps-toolkit`
//! does (app events, app actions, webhooks and frontend-signed requests):
//!
//! ```
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//! use countersign_core::contentful::{self, Context, RequestToSign, SigningSecret, RequestVerifier};
//! use http::Method;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = SigningSecret::new("a".repeat(64))?;
//! let sent_at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
//!
//! // What Contentful does before it sends a request:
//! let request = RequestToSign::new(Method::POST, "/hooks?source=contentful").with_body(b"{}");
//! let signed = contentful::sign(&secret, &request, sent_at, &Context::default())?;
//! let mut arrived = http::Request::post("/hooks?source=contentful").body(())?;
//! *arrived.headers_mut() = signed.to_header_map()?;
//! let (parts, ()) = arrived.into_parts();
//!
//! // What your backend does when it arrives (the raw request target and the raw body):
//! let verifier = RequestVerifier::new(secret);
//! let now = sent_at + Duration::from_secs(2);
//! let verdict = verifier.verify(&parts, "{}".into(), None, now)?;
//! assert_eq!(verdict.secret_index(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! # One entry point per provider
//!
//! Each provider has one function that takes a request as it arrived (its parts, its body
//! buffered whole), the keys, secrets or session keys, and the time, and returns one
//! [`Verdict`]: the verified facts, the bytes the handler must read, what identifies the
//! delivery and for how long, and whose it is. Everything request-level lives behind it (the
//! refresh-once key policy, the request target and path prefix, the session's transport and
//! CSRF check); the Tower layers, the command line and the benchmarks call these:
//!
//! | request | entry point |
//! |---|---|
//! | a Contentstack webhook | [`contentstack::WebhookVerifier::verify`] |
//! | a Contentful request (app event, action, webhook, frontend-signed) | [`contentful::RequestVerifier::verify`] |
//! | the page load of a signed UI location | [`session::Sessions::open`] |
//! | a call with the app's session | [`session::Sessions::authenticate`] |
//!
//! What a delivery is, and where deliveries are remembered ([`replay::ReplayStore`]), is in
//! [`replay`].
//!
//! # Crypto backends
//!
//! The `aws-lc` feature (the default) uses aws-lc-rs. The `rust-crypto` feature uses the
//! pure-Rust RustCrypto crates, for targets without a C toolchain. Features are additive: with
//! both enabled, aws-lc is used. [`backend`] says which one this build uses.
//!
//! One exception, for speed: HMAC-SHA256 (Contentful, Contentstack's HMAC method) is computed
//! by RustCrypto's `hmac` in either build wherever the CPU has SHA instructions (x86-64 SHA-NI,
//! AArch64 SHA2). There it hashes as fast as aws-lc without aws-lc's fixed cost of about
//! 140 ns per MAC; elsewhere the aws-lc build keeps aws-lc's vector assembly. Both give the
//! same bytes (tested against RFC 4231 and each other).

#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod bound;
pub mod contentful;
pub mod contentstack;
pub mod credentials;
mod crypto;
mod error;
mod freshness;
pub mod inbox;
pub mod ip;
mod js;
mod names;
mod provider;
pub mod reason;
pub mod replay;
pub mod session;
pub mod verdict;

/// Internal parsers exposed to the fuzz targets (`fuzz/`); not a stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// `JSON.stringify(JSON.parse(text))`, or `None` when `JSON.parse` would throw.
    #[must_use]
    pub fn json_stringify_parse(text: &[u8]) -> Option<Vec<u8>> {
        crate::js::json::canonicalize(text).ok()
    }
}

pub use error::{ConfigError, ConfigErrorKind, ReasonCode, Rejected};
pub use provider::Provider;
pub use verdict::Verdict;

/// The longest duration a time setting holds (about a hundred years): a longer time-to-live,
/// tolerance, skew, leeway, margin or lease is taken as this, so that no window overflows the
/// clock's arithmetic (`Duration::MAX` used to panic on every request).
pub const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);

/// The time `secs` seconds after the Unix epoch, or the latest time the clock holds: a signed
/// `exp` of `u64::MAX` is far in the future, never a panic.
#[must_use]
pub fn unix_seconds(secs: u64) -> std::time::SystemTime {
    let epoch = std::time::SystemTime::UNIX_EPOCH;
    epoch
        .checked_add(std::time::Duration::from_secs(secs))
        .or_else(|| epoch.checked_add(MAX_WINDOW.saturating_mul(100)))
        .or_else(|| epoch.checked_add(MAX_WINDOW))
        .unwrap_or(epoch)
}

/// Headers that carry secrets, signatures or sessions: every layer marks them sensitive, so
/// that tracing layers that print headers redact them.
pub const SENSITIVE_HEADERS: [&str; 8] = [
    "authorization",
    "cookie",
    "set-cookie",
    session::CSRF_HEADER,
    contentful::SIGNATURE,
    contentstack::RSA_SIGNATURE_HEADER,
    contentstack::HMAC_SIGNATURE_HEADER,
    contentstack::LEGACY_SIGNATURE_HEADER,
];

/// Marks the [`SENSITIVE_HEADERS`] of `headers` sensitive.
pub fn mark_sensitive(headers: &mut http::HeaderMap) {
    for name in SENSITIVE_HEADERS {
        if let http::header::Entry::Occupied(mut entry) = headers.entry(name) {
            entry.iter_mut().for_each(|value| value.set_sensitive(true));
        }
    }
}

/// The cryptographic library a build of this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// aws-lc-rs, the default (`aws-lc` feature).
    AwsLc,
    /// The pure-Rust RustCrypto crates (`rust-crypto` feature, without `aws-lc`).
    RustCrypto,
}

/// The crypto backend this build uses: aws-lc when its feature is on, RustCrypto otherwise.
#[must_use]
pub const fn backend() -> Backend {
    crypto::BACKEND
}

/// `bytes` random bytes from the operating system's cryptographic random source, in lower-case
/// hex: for session ids, claim owners, dev secrets.
///
/// # Errors
/// [`ConfigErrorKind::RandomSource`] when the random source fails.
pub fn random_hex(bytes: usize) -> Result<String, ConfigError> {
    let mut buf = vec![0u8; bytes];
    crypto::fill_random(&mut buf).map_err(|e| {
        ConfigError::new(
            ConfigErrorKind::RandomSource,
            format!("the random source failed: {e}"),
        )
    })?;
    Ok(hex::encode(buf))
}
