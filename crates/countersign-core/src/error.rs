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

/// A kind of rejection: its [`Reason`](crate::reason::Reason) in the catalogue, with a stable,
/// machine-readable snake_case code.
pub trait ReasonCode: Copy + fmt::Debug + Send + Sync + 'static {
    /// Why, from the [catalogue](crate::reason).
    fn reason(self) -> &'static crate::reason::Reason;

    /// The code: `signature_mismatch`, `timestamp_expired`, ...
    fn code(self) -> &'static str {
        self.reason().code
    }
}

/// Why a request, a token or a session was refused: a [`ReasonCode`] kind and a message for
/// people that never holds a secret, a key, a signature or a body.
///
/// The verifiers name it per module: [`contentful::Error`](crate::contentful::Error),
/// [`contentstack::Error`](crate::contentstack::Error),
/// [`AppTokenError`](crate::contentstack::AppTokenError),
/// [`SessionError`](crate::session::SessionError).
#[derive(Clone, PartialEq, Eq)]
pub struct Rejected<K> {
    kind: K,
    message: String,
}

impl<K: ReasonCode> Rejected<K> {
    /// A rejection of `kind`; `message` says what was wrong and must not hold a secret.
    pub fn new(kind: K, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Why.
    #[must_use]
    pub fn kind(&self) -> K {
        self.kind
    }

    /// What was wrong, for a person.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<K: ReasonCode> fmt::Debug for Rejected<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl<K: ReasonCode> fmt::Display for Rejected<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl<K: ReasonCode> std::error::Error for Rejected<K> {}
