//! [`KeySet`]: the Contentstack public keys a verifier accepts.

use std::path::Path;

use crate::crypto::{PublicKey, invalid_key};
use crate::error::ConfigError;

/// The public keys a verifier accepts: one normally, several during a rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<PublicKey>,
}

impl KeySet {
    /// A set of these keys.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`](crate::ConfigErrorKind::InvalidKey) when `keys` is empty.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Result<Self, ConfigError> {
        let keys: Vec<PublicKey> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(invalid_key("a key set needs at least one key"));
        }
        Ok(Self { keys })
    }

    /// Parses keys from text: one or more PEM blocks (PKCS#1 or SPKI), or a `public-keys.json`
    /// document (`{"signing-key": "-----BEGIN RSA PUBLIC KEY-----..."}`).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`](crate::ConfigErrorKind::InvalidKey) when the text holds no key or an unusable one.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.starts_with('{') {
            return Self::from_public_keys_json(text.as_bytes());
        }
        let blocks = pem::parse_many(text).map_err(|e| invalid_key(format!("not PEM: {e}")))?;
        if blocks.is_empty() {
            return Err(invalid_key(
                "no PEM key found; expected `-----BEGIN RSA PUBLIC KEY-----` or a public-keys.json document",
            ));
        }
        Self::new(
            blocks
                .iter()
                .map(PublicKey::from_pem_block)
                .collect::<Result<Vec<_>, _>>()?,
        )
    }

    /// Parses a `public-keys.json` document, as served at
    /// `https://<app host>/.well-known/public-keys.json`.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`](crate::ConfigErrorKind::InvalidKey) when it is not JSON, has no `signing-key` string, or that
    /// is not a usable key.
    pub fn from_public_keys_json(document: &[u8]) -> Result<Self, ConfigError> {
        let value: serde_json::Value = serde_json::from_slice(document)
            .map_err(|e| invalid_key(format!("public-keys.json is not JSON: {e}")))?;
        let pem = value
            .get("signing-key")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| invalid_key("public-keys.json has no \"signing-key\" string"))?;
        Self::new([PublicKey::from_pem(pem)?])
    }

    /// Reads keys from a file, in any form [`parse`](Self::parse) accepts.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`](crate::ConfigErrorKind::InvalidKey) when the file cannot be read or holds no usable key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            invalid_key(format!("cannot read the key file {}: {e}", path.display()))
        })?;
        Self::parse(&text)
    }

    /// Reads keys from an environment variable holding PEM text or a `public-keys.json`
    /// document.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`](crate::ConfigErrorKind::InvalidKey) when the variable is unset or holds no usable key.
    pub fn from_env(name: &str) -> Result<Self, ConfigError> {
        let text = std::env::var(name)
            .map_err(|_| invalid_key(format!("the environment variable {name} is not set")))?;
        // PEM in an environment variable often arrives with literal `\n`.
        Self::parse(&text.replace("\\n", "\n"))
    }

    /// The keys, in order.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.iter()
    }

    /// How many keys there are (at least one).
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a key set holds at least one key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl From<PublicKey> for KeySet {
    fn from(key: PublicKey) -> Self {
        Self { keys: vec![key] }
    }
}
