//! Configuration errors, shared by every verifier in this crate.

use std::fmt;

/// A verifier or signer was configured with something unusable (a malformed secret, an invalid
/// path prefix, ...). Raised when configuring, never while handling a request.
///
/// The message names what to fix and never repeats a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    message: String,
}

/// What kind of configuration was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A signing secret does not have the form the provider requires.
    InvalidSecret,
    /// A verifier was given no secret to verify with.
    NoSecrets,
    /// A path prefix is not of the form `/segment[/segment...]`.
    InvalidPathPrefix,
    /// A key is not in a supported form (PEM, DER, `public-keys.json`) or not a usable RSA key.
    InvalidKey,
    /// A region name or base URL is not one we know or can use.
    InvalidRegion,
    /// A setting is out of its range.
    InvalidSetting,
    /// The operating system's random source failed.
    RandomSource,
}

impl ConfigError {
    /// A configuration error of `kind`; `message` names what to fix and must not hold a secret.
    pub fn new(kind: ConfigErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// What kind of configuration was rejected.
    #[must_use]
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}
