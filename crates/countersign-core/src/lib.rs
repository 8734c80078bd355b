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
pub mod crypto;
mod error;
mod freshness;
pub mod inbox;
pub mod ip;
mod js;
pub mod lambda;
mod names;
mod provider;
pub mod reason;
pub mod reconcile;
pub mod replay;
mod sensitive;
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

pub use crypto::{Backend, backend, random_hex};
pub use error::{ConfigError, ConfigErrorKind, ReasonCode, Rejected};
pub use freshness::{MAX_WINDOW, unix_seconds};
pub use provider::Provider;
pub use sensitive::{SENSITIVE_HEADERS, mark_sensitive};
pub use verdict::Verdict;
