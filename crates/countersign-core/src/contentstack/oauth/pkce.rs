//! PKCE (RFC 7636) for a public client: a code verifier, and the challenge sent for it.

use std::fmt;

use base64::Engine as _;

use crate::error::{ConfigError, ConfigErrorKind};

/// The characters a code verifier is made of (RFC 7636 section 4.1).
const CHARSET: &[u8; 66] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";

/// How many characters [`CodeVerifier::generate`] draws: 64, about 386 bits.
const GENERATED_LEN: usize = 64;

/// A PKCE code verifier: 43 to 128 characters of `A-Z a-z 0-9 - . _ ~`. Sent only with the
/// code it was made for; the authorization URL carries its [`challenge`](Self::challenge).
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeVerifier(String);

impl CodeVerifier {
    /// A fresh verifier of 64 characters from the operating system's random source.
    ///
    /// # Errors
    /// [`ConfigErrorKind::RandomSource`] when the random source fails.
    pub fn generate() -> Result<Self, ConfigError> {
        let mut text = String::with_capacity(GENERATED_LEN);
        // 66 characters: bytes of 0..=197 (three rounds of 66) map uniformly, others are drawn again.
        while text.len() < GENERATED_LEN {
            let mut bytes = [0u8; GENERATED_LEN];
            crate::crypto::fill_random(&mut bytes).map_err(|e| {
                ConfigError::new(
                    ConfigErrorKind::RandomSource,
                    format!("the random source failed: {e}"),
                )
            })?;
            for byte in bytes.into_iter().filter(|b| *b < 198) {
                if text.len() < GENERATED_LEN {
                    text.push(char::from(CHARSET[usize::from(byte) % CHARSET.len()]));
                }
            }
        }
        Ok(Self(text))
    }

    /// A verifier of your own (one kept between the redirect and the callback).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSetting`] unless it has 43 to 128 characters, all of
    /// `A-Z a-z 0-9 - . _ ~`.
    pub fn new(text: impl Into<String>) -> Result<Self, ConfigError> {
        let text = text.into();
        let valid = (43..=128).contains(&text.len()) && text.bytes().all(|b| CHARSET.contains(&b));
        if valid {
            Ok(Self(text))
        } else {
            Err(ConfigError::new(
                ConfigErrorKind::InvalidSetting,
                "a PKCE code verifier has 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
            ))
        }
    }

    /// The `code_challenge` for it: base64url, without padding, of its SHA-256 (`S256`).
    #[must_use]
    pub fn challenge(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(crate::crypto::sha256(self.0.as_bytes()))
    }

    /// The verifier itself, for the code exchange's form.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CodeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeVerifier(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

    use super::*;

    #[test]
    fn the_challenge_of_rfc_7636s_example() {
        let verifier = CodeVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        assert_eq!(
            verifier.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_verifiers_are_valid_and_differ() {
        let (a, b) = (
            CodeVerifier::generate().unwrap(),
            CodeVerifier::generate().unwrap(),
        );
        assert_ne!(a, b);
        assert!(CodeVerifier::new(a.expose()).is_ok());
        assert_eq!(a.expose().len(), GENERATED_LEN);
        assert_eq!(format!("{a:?}"), "CodeVerifier(<redacted>)");
    }

    #[test]
    fn a_verifier_is_43_to_128_characters_of_the_charset() {
        assert!(CodeVerifier::new("a".repeat(42)).is_err());
        assert!(CodeVerifier::new("a".repeat(43)).is_ok());
        assert!(CodeVerifier::new("a".repeat(128)).is_ok());
        assert!(CodeVerifier::new("a".repeat(129)).is_err());
        assert!(CodeVerifier::new(format!("{}+", "a".repeat(43))).is_err());
        assert!(CodeVerifier::new(format!("{} ", "a".repeat(43))).is_err());
    }
}
