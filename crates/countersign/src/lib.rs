//! Tower middleware and axum extractors that prove a request really came from Contentstack or
//! Contentful before any handler sees it.
//!
//! The layers are being built. Today this crate re-exports the wire formats of
//! [`countersign_core`] ([`contentful`] and [`contentstack`]) and adds what needs a runtime:
//! [`well_known`], Contentstack's public key fetched from the region's endpoint, cached and
//! refreshed (feature `well-known`, on by default).

pub use countersign_core::{
    Backend, ConfigError, ConfigErrorKind, backend, contentful, contentstack,
};

#[cfg(feature = "well-known")]
pub mod well_known;

/// The README's examples, compiled and run as doc tests.
#[cfg(all(doctest, feature = "well-known"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
