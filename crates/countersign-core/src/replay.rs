//! What identifies a verified request for replay protection.

use std::fmt;

use crate::crypto::sha256;

/// A digest that identifies one verified delivery: of the verified signature, or of the
/// signed idempotency key where the provider sends one (the same for every retry).
///
/// Derived only from verified input, so an attacker cannot choose it; a store keyed by it never
/// sees unverified data.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayKey([u8; 32]);

impl ReplayKey {
    /// The key of `parts`, under a `domain` that keeps keys of different kinds apart.
    pub(crate) fn derive(domain: &str, parts: &[&[u8]]) -> Self {
        let mut input =
            Vec::with_capacity(domain.len() + 1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
        input.extend_from_slice(domain.as_bytes());
        for part in parts {
            input.push(0);
            input.extend_from_slice(part);
        }
        Self(sha256(&input))
    }

    /// A key from a digest computed elsewhere (a custom verification, tests).
    #[must_use]
    pub fn from_bytes(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The digest.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest in lower-case hex (64 characters), for store keys.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayKey({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
