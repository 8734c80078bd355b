//! Secrets sealed at rest: the examples keep OAuth tokens in SQLite or PostgreSQL only as
//! AES-256-GCM ciphertexts, so that neither the database file nor a `pg_dump` shows them.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The length of a nonce, stored before each ciphertext.
const NONCE_LEN: usize = 12;
/// What the fingerprint key is derived with: HMAC-SHA256 of this under the sealing key.
const FINGERPRINT_KEY_LABEL: &[u8] = b"countersign sealed-token fingerprint v1";

/// The key that seals stored secrets, from `OAUTH_TOKEN_KEY` (base64 of 32 bytes) or generated
/// once and kept, readable by the owner only, under the data directory. `Debug` never shows it.
pub struct SealingKey {
    cipher: Aes256Gcm,
    fingerprints: Hmac<Sha256>,
}

impl SealingKey {
    /// The key in `text`: base64 of 32 bytes.
    ///
    /// # Errors
    /// When it is not.
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| "the sealing key is not base64".to_owned())?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != 32 {
            return Err(format!("the sealing key has {} bytes, not 32", bytes.len()));
        }
        let cipher =
            Aes256Gcm::new_from_slice(bytes).map_err(|_| "an unusable sealing key".to_owned())?;
        // Fingerprints under a key of their own, derived from this one, so that no key
        // serves two algorithms.
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(bytes)
            .map_err(|_| "an unusable sealing key".to_owned())?;
        derive.update(FINGERPRINT_KEY_LABEL);
        let fingerprints = <Hmac<Sha256> as Mac>::new_from_slice(&derive.finalize().into_bytes())
            .map_err(|_| "an unusable sealing key".to_owned())?;
        Ok(Self {
            cipher,
            fingerprints,
        })
    }

    /// The key of `configured` (the value of `OAUTH_TOKEN_KEY`), or else the one kept in
    /// `dir/oauth-token-key`, made on the first start. A fleet sets the variable: each instance
    /// must open what the others sealed.
    ///
    /// # Errors
    /// A configured key that is not base64 of 32 bytes, or a key file that cannot be read or
    /// written.
    pub fn configured_or_kept(configured: Option<&str>, dir: &Path) -> Result<Self, String> {
        if let Some(text) = configured {
            return Self::from_base64(text).map_err(|e| format!("OAUTH_TOKEN_KEY: {e}"));
        }
        let path = dir.join("oauth-token-key");
        let text = crate::kept_secret(&path, || {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| format!("the random source failed: {e}"))?;
            Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
        })?;
        Self::from_base64(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// `plaintext` sealed for `context` (what it belongs to, such as the installation): a
    /// random nonce, then the ciphertext and its tag. It opens only with this key and the same
    /// context, so a sealed value copied to another row does not open there.
    ///
    /// # Errors
    /// When the random source fails.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| format!("the random source failed: {e}"))?;
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .map_err(|_| "sealing failed".to_owned())?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// What [`seal`](Self::seal) sealed for `context`.
    ///
    /// # Errors
    /// When it was sealed with another key or for another context, or was altered.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, String> {
        if sealed.len() < NONCE_LEN {
            return Err("a sealed value is too short".to_owned());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| "a sealed value does not open with this key and context".to_owned())
    }

    /// A keyed fingerprint of `secret` (HMAC-SHA256, hex): what a store compares to find
    /// whether a stored token is still the one a refresh used, without opening it.
    #[must_use]
    pub fn fingerprint(&self, secret: &str) -> String {
        let mut mac = self.fingerprints.clone();
        mac.update(secret.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

/// The sealing keys in force: the first seals, every one opens. Rotating `OAUTH_TOKEN_KEY` is
/// putting a new key first and keeping the old ones after it (`new,old`) until every row was
/// read once (each is sealed again with the new key when it is read). `Debug` shows none.
pub struct SealingKeys {
    keys: Vec<SealingKey>,
}

impl SealingKeys {
    /// The keys of `configured` (`OAUTH_TOKEN_KEY`: base64 keys separated by commas, the one
    /// that seals first), or else the one kept in `dir/oauth-token-key`, made on the first
    /// start.
    ///
    /// # Errors
    /// A configured key that is not base64 of 32 bytes, an empty list, or a key file that
    /// cannot be read or written.
    pub fn configured_or_kept(configured: Option<&str>, dir: &Path) -> Result<Self, String> {
        let Some(list) = configured else {
            return Ok(Self::from(SealingKey::configured_or_kept(None, dir)?));
        };
        let keys = list
            .split(',')
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .enumerate()
            .map(|(n, key)| {
                SealingKey::from_base64(key)
                    .map_err(|e| format!("OAUTH_TOKEN_KEY, key {}: {e}", n + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("OAUTH_TOKEN_KEY names no key".to_owned());
        }
        Ok(Self { keys })
    }

    /// `plaintext` sealed for `context` with the first key.
    ///
    /// # Errors
    /// When the random source fails.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, String> {
        self.keys[0].seal(plaintext, context)
    }

    /// What one of the keys sealed for `context`, and whether that was the first (else it is
    /// to be sealed again).
    ///
    /// # Errors
    /// When no key opens it for `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<(Vec<u8>, bool), String> {
        self.keys
            .iter()
            .enumerate()
            .find_map(|(n, key)| key.open(sealed, context).ok().map(|plain| (plain, n == 0)))
            .ok_or_else(|| "a sealed value does not open with any key and this context".to_owned())
    }

    /// `secret`'s fingerprint under the first key: what a new row keeps.
    #[must_use]
    pub fn fingerprint(&self, secret: &str) -> String {
        self.keys[0].fingerprint(secret)
    }

    /// `secret`'s fingerprint under every key, the first key's first: a row sealed before a
    /// rotation keeps an old key's.
    #[must_use]
    pub fn fingerprints(&self, secret: &str) -> Vec<String> {
        self.keys
            .iter()
            .map(|key| key.fingerprint(secret))
            .collect()
    }
}

impl From<SealingKey> for SealingKeys {
    fn from(key: SealingKey) -> Self {
        Self { keys: vec![key] }
    }
}

impl fmt::Debug for SealingKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingKeys({} keys, <redacted>)", self.keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealingKey {
        SealingKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
            .unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_context() {
        let sealed = key().seal(b"refresh-token-1", b"org1/blt1").unwrap();
        assert!(
            !sealed.windows(7).any(|w| w == b"refresh"),
            "no plaintext in the sealed bytes"
        );
        assert_eq!(
            key().open(&sealed, b"org1/blt1").unwrap(),
            b"refresh-token-1"
        );
        assert!(
            key().open(&sealed, b"org1/blt2").is_err(),
            "moved to another installation"
        );
        let other =
            SealingKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([8u8; 32]))
                .unwrap();
        assert!(other.open(&sealed, b"org1/blt1").is_err());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(key().open(&altered, b"org1/blt1").is_err());
        assert!(key().open(&sealed[..5], b"org1/blt1").is_err());
        assert_ne!(
            key().seal(b"x", b"c").unwrap(),
            key().seal(b"x", b"c").unwrap(),
            "a nonce per seal"
        );
    }

    #[test]
    fn fingerprints_are_keyed_and_debug_shows_no_key() {
        assert_eq!(key().fingerprint("rt"), key().fingerprint("rt"));
        assert_ne!(key().fingerprint("rt"), key().fingerprint("rt2"));
        let other =
            SealingKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([8u8; 32]))
                .unwrap();
        assert_ne!(key().fingerprint("rt"), other.fingerprint("rt"));
        assert_eq!(format!("{:?}", key()), "SealingKey(<redacted>)");
    }

    #[test]
    fn a_ring_seals_with_its_first_key_and_opens_with_any() {
        let b64 = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        let dir = std::env::temp_dir();
        let old = SealingKeys::configured_or_kept(Some(&b64(7)), &dir).unwrap();
        let sealed_old = old.seal(b"t", b"c").unwrap();
        let ring = SealingKeys::configured_or_kept(Some(&format!("{}, {}", b64(8), b64(7))), &dir)
            .unwrap();
        assert_eq!(
            ring.open(&sealed_old, b"c").unwrap(),
            (b"t".to_vec(), false)
        );
        let sealed_new = ring.seal(b"t", b"c").unwrap();
        assert_eq!(ring.open(&sealed_new, b"c").unwrap(), (b"t".to_vec(), true));
        assert!(
            old.open(&sealed_new, b"c").is_err(),
            "sealed with the new key"
        );
        assert_eq!(ring.fingerprints("rt")[1], old.fingerprint("rt"));
        assert_eq!(ring.fingerprint("rt"), ring.fingerprints("rt")[0]);
        assert!(SealingKeys::configured_or_kept(Some(" , "), &dir).is_err());
        assert!(SealingKeys::configured_or_kept(Some(&format!("{},!!", b64(8))), &dir).is_err());
        assert_eq!(format!("{ring:?}"), "SealingKeys(2 keys, <redacted>)");
    }

    #[test]
    fn a_key_is_configured_or_made_once_and_kept_private() {
        let dir = std::env::temp_dir().join(format!("sealed-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::private_dir(&dir).unwrap();
        let first = SealingKey::configured_or_kept(None, &dir).unwrap();
        let sealed = first.seal(b"t", b"c").unwrap();
        let again = SealingKey::configured_or_kept(None, &dir).unwrap();
        assert_eq!(
            again.open(&sealed, b"c").unwrap(),
            b"t",
            "the kept key is reused"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("oauth-token-key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "owner only");
        }
        assert!(
            SealingKey::configured_or_kept(Some("c2hvcnQ="), &dir).is_err(),
            "not 32 bytes"
        );
        assert!(SealingKey::configured_or_kept(Some("!!"), &dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
