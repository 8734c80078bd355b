//! The app's signing secret.

use std::fmt;

use crate::crypto::{self, HmacSha256Key};
use crate::error::{ConfigError, ConfigErrorKind};

/// Length of a Contentful signing secret, in characters.
const LEN: usize = 64;

/// A Contentful request signing secret: exactly 64 characters of `[0-9a-zA-Z+/=_-]`, the form
/// Contentful's API accepts. Its UTF-8 bytes are the HMAC key, not hex- or base64-decoded.
///
/// Checked when it is made, so that a bad secret is a configuration error at start-up, never a
/// failure of each request. `Debug` never shows it.
#[derive(Clone)]
pub struct SigningSecret {
    text: String,
    key: HmacSha256Key,
}

impl SigningSecret {
    /// Checks `secret` and prepares it for signing and verifying.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSecret`] when it is not 64 characters long or has a character
    /// outside `[0-9a-zA-Z+/=_-]`. The error says which, and never repeats the secret.
    pub fn new(secret: impl Into<String>) -> Result<Self, ConfigError> {
        let text = secret.into();
        let chars = text.chars().count();
        if chars != LEN {
            return Err(ConfigError::new(
                ConfigErrorKind::InvalidSecret,
                format!(
                    "a Contentful signing secret has exactly {LEN} characters; this one has {chars}"
                ),
            ));
        }
        if let Some(position) = text.chars().position(|c| !is_secret_char(c)) {
            return Err(ConfigError::new(
                ConfigErrorKind::InvalidSecret,
                format!(
                    "a Contentful signing secret consists of 0-9 a-z A-Z + / = _ -; character {} is not one of them",
                    position + 1
                ),
            ));
        }
        let key = HmacSha256Key::new(text.as_bytes());
        Ok(Self { text, key })
    }

    /// A new random secret that Contentful accepts, from the operating system's cryptographic
    /// random source: 64 characters of `[0-9a-zA-Z_-]` (about 384 bits), starting with a
    /// letter or digit so that command lines never mistake it for an option.
    ///
    /// # Errors
    /// [`ConfigErrorKind::RandomSource`] when the operating system's random source fails.
    pub fn generate() -> Result<Self, ConfigError> {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bytes = [0u8; LEN];
        // Draw again while the first symbol would be `-` or `_` (indices 62 and 63).
        loop {
            crypto::fill_random(&mut bytes).map_err(|e| {
                ConfigError::new(
                    ConfigErrorKind::RandomSource,
                    format!("the operating system's random source failed: {e}"),
                )
            })?;
            if bytes[0] & 0x3f < 62 {
                break;
            }
        }
        // 64 symbols: each byte's low six bits pick one without bias.
        let text = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 0x3f)]))
            .collect::<String>();
        Self::new(text)
    }

    /// The secret itself, for handing to Contentful or storing. Keep it out of logs.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.text
    }

    pub(super) fn key(&self) -> &HmacSha256Key {
        &self.key
    }
}

fn is_secret_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-')
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

impl PartialEq for SigningSecret {
    fn eq(&self, other: &Self) -> bool {
        crypto::constant_time_eq(self.text.as_bytes(), other.text.as_bytes())
    }
}

impl Eq for SigningSecret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_must_have_64_characters() {
        let err = SigningSecret::new("a".repeat(63)).unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::InvalidSecret);
        assert!(err.to_string().contains("this one has 63"));
        assert!(SigningSecret::new("a".repeat(65)).is_err());
        assert!(SigningSecret::new("a".repeat(64)).is_ok());
    }

    #[test]
    fn secret_must_use_contentfuls_character_set() {
        let ok = format!("{}+/=_-", "aZ9".repeat(19) + "xy");
        assert!(SigningSecret::new(ok).is_ok());
        let bad = format!("{} ", "a".repeat(63));
        let err = SigningSecret::new(bad).unwrap_err();
        assert!(err.to_string().contains("character 64"));
        assert!(SigningSecret::new(format!("{}é", "a".repeat(63))).is_err());
    }

    #[test]
    fn errors_and_debug_never_show_the_secret() {
        let text = "s3cr3t".repeat(10) + "abcd";
        let secret = SigningSecret::new(text.clone()).unwrap();
        assert!(!format!("{secret:?}").contains("s3cr3t"));
        let err = SigningSecret::new(format!("{text}!")).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("s3cr3t"));
    }

    #[test]
    fn generated_secrets_are_valid_and_distinct() {
        let a = SigningSecret::generate().unwrap();
        let b = SigningSecret::generate().unwrap();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().starts_with(|c: char| c.is_ascii_alphanumeric()));
        assert!(a.expose().chars().all(is_secret_char));
        assert_ne!(a, b);
    }
}
