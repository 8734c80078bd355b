//! Tower middleware and axum extractors that prove a request really came from Contentstack or
//! Contentful before any handler sees it.
//!
//! The layers are being built; today this crate re-exports [`countersign_core`], where the wire
//! formats live: [`contentful`] signs and verifies Contentful requests bit-exactly as
//! `@contentful/node-apps-toolkit` does.

pub use countersign_core::{Backend, ConfigError, ConfigErrorKind, backend, contentful};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
