//! RSA keys as both providers' schemes use them: the public keys that verify RSA-PSS and
//! RS256, the private key that signs (tests, local development, the command line), and the
//! RSA-PSS salt length.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pkcs1::der::Decode as _;

use super::{self as crypto, PssSalt, RSA_MAX_BITS, RSA_MIN_BITS, RsaPrivateKey, RsaPublicKey};
use crate::error::{ConfigError, ConfigErrorKind};

/// `rsaEncryption`, the algorithm of an RSA key in SPKI and PKCS#8.
const RSA_ENCRYPTION: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Which RSA-PSS salt length a signature uses.
///
/// Contentstack's docs say 32 (the digest length) and call the earlier documented maximum
/// (222 for RSA-2048, Node's default when signing) outdated; both occur in the wild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaltLength {
    /// 32 bytes, the SHA-256 digest length.
    Digest,
    /// The maximum the key allows: 222 bytes for RSA-2048.
    Max,
}

impl SaltLength {
    pub(crate) fn to_pss(self) -> PssSalt {
        match self {
            Self::Digest => PssSalt::Digest,
            Self::Max => PssSalt::Max,
        }
    }

    /// `digest` or `max`, as the command line names them.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Digest => "digest",
            Self::Max => "max",
        }
    }
}

impl fmt::Display for SaltLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed RSA public key that verifies Contentstack's signatures (webhooks and app-tokens).
///
/// Parsed once; verifying with it parses nothing.
#[derive(Clone)]
pub struct PublicKey {
    pkcs1_der: Vec<u8>,
    /// The modulus, big-endian, without leading zeros: as long as a signature.
    modulus: Vec<u8>,
    rsa: RsaPublicKey,
    jwt: jsonwebtoken::DecodingKey,
    fingerprint: String,
    bits: usize,
    /// Whether the salt length that last verified with this key is the maximum: tried first
    /// next time. Shared by the key's clones.
    salt_max_first: Arc<AtomicBool>,
}

impl PublicKey {
    /// Parses one PEM key: PKCS#1 (`BEGIN RSA PUBLIC KEY`, what Contentstack publishes) or SPKI
    /// (`BEGIN PUBLIC KEY`).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`] when the text is not such a PEM or not an RSA key of 2048 to
    /// 4096 bits.
    pub fn from_pem(pem: &str) -> Result<Self, ConfigError> {
        let block =
            pem::parse(pem.trim()).map_err(|e| invalid_key(format!("not a PEM key: {e}")))?;
        Self::from_pem_block(&block)
    }

    pub(crate) fn from_pem_block(block: &pem::Pem) -> Result<Self, ConfigError> {
        match block.tag() {
            "RSA PUBLIC KEY" => Self::from_pkcs1_der(block.contents()),
            "PUBLIC KEY" => Self::from_spki_der(block.contents()),
            other => Err(invalid_key(format!(
                "a PEM block `{other}` is not a public key; expected `RSA PUBLIC KEY` or `PUBLIC KEY`"
            ))),
        }
    }

    /// Parses a DER `SubjectPublicKeyInfo` holding an RSA key.
    ///
    /// # Errors
    /// As [`from_pem`](Self::from_pem).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, ConfigError> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| invalid_key(format!("not a DER SubjectPublicKeyInfo: {e}")))?;
        if spki.algorithm.oid != RSA_ENCRYPTION {
            return Err(invalid_key(format!(
                "the key is not an RSA key (algorithm {})",
                spki.algorithm.oid
            )));
        }
        let pkcs1 = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| invalid_key("the key's bit string is not whole bytes"))?;
        Self::from_pkcs1_der(pkcs1)
    }

    /// Parses a DER `RSAPublicKey` (PKCS#1).
    ///
    /// # Errors
    /// As [`from_pem`](Self::from_pem).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, ConfigError> {
        let parsed = pkcs1::RsaPublicKey::from_der(der)
            .map_err(|e| invalid_key(format!("not a DER RSAPublicKey: {e}")))?;
        let modulus = parsed.modulus.as_bytes();
        let bits = modulus.len() * 8 - modulus.first().map_or(8, |b| b.leading_zeros() as usize);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(invalid_key(format!(
                "an RSA key of {bits} bits; {RSA_MIN_BITS} to {RSA_MAX_BITS} bits are accepted"
            )));
        }
        let jwt = jsonwebtoken::DecodingKey::from_rsa_raw_components(
            modulus,
            parsed.public_exponent.as_bytes(),
        );
        let rsa = RsaPublicKey::from_pkcs1_der(der).map_err(invalid_key)?;
        let modulus = modulus[modulus.iter().take_while(|b| **b == 0).count()..].to_vec();
        Ok(Self {
            fingerprint: hex::encode(&crypto::sha256(der)[..8]),
            pkcs1_der: der.to_vec(),
            modulus,
            rsa,
            jwt,
            bits,
            salt_max_first: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The first 8 bytes of the SHA-256 of the key's PKCS#1 DER, in hex: a short name for logs
    /// and diagnostics.
    #[must_use]
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The modulus size in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The key as PKCS#1 PEM (`BEGIN RSA PUBLIC KEY`), the form Contentstack publishes.
    #[must_use]
    pub fn to_pkcs1_pem(&self) -> String {
        pem_lf(&pem::Pem::new("RSA PUBLIC KEY", self.pkcs1_der.clone()))
    }

    /// The key as a `public-keys.json` document, as the well-known endpoint serves it.
    #[must_use]
    pub fn to_public_keys_json(&self) -> String {
        serde_json::json!({ "signing-key": self.to_pkcs1_pem() }).to_string()
    }

    /// Verifies a PSS signature over the message whose SHA-256 is `digest`. A signature of
    /// another length, or whose value is not below the modulus, is refused before any
    /// arithmetic: RFC 8017 (RSAVP1) requires `0 <= s < n`, and without that check `s + n`
    /// would verify as `s` on a backend that reduces modulo `n`.
    pub(crate) fn verify_pss(&self, digest: &[u8; 32], signature: &[u8], salt: SaltLength) -> bool {
        self.is_signature_representative(signature)
            && self.rsa.verify_pss_sha256(digest, signature, salt.to_pss())
    }

    /// The salt length this key tries first: the one that last verified a webhook with it
    /// (32 until one has). A sender that sticks to one salt length, the maximum included,
    /// costs one RSA operation per delivery.
    #[must_use]
    pub fn preferred_salt(&self) -> SaltLength {
        if self.salt_max_first.load(Ordering::Relaxed) {
            SaltLength::Max
        } else {
            SaltLength::Digest
        }
    }

    /// The salt lengths in the order to try them.
    pub(crate) fn salt_order(&self) -> [SaltLength; 2] {
        match self.preferred_salt() {
            SaltLength::Max => [SaltLength::Max, SaltLength::Digest],
            SaltLength::Digest => [SaltLength::Digest, SaltLength::Max],
        }
    }

    /// Remembers which salt length just verified.
    pub(crate) fn remember_salt(&self, salt: SaltLength) {
        self.salt_max_first
            .store(salt == SaltLength::Max, Ordering::Relaxed);
    }

    /// Whether `signature` has the modulus' length and, as a big-endian integer, is below it.
    /// Equal lengths make the byte-wise comparison a numeric one.
    fn is_signature_representative(&self, signature: &[u8]) -> bool {
        signature.len() == self.modulus.len() && signature < self.modulus.as_slice()
    }

    pub(crate) fn jwt_key(&self) -> &jsonwebtoken::DecodingKey {
        &self.jwt
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("bits", &self.bits)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.pkcs1_der == other.pkcs1_der
    }
}

impl Eq for PublicKey {}
/// An RSA private key that signs as Contentstack signs: webhooks (RSA-PSS) and app-tokens
/// (RS256). Only for testing, local development and the command line: nobody but Contentstack
/// holds Contentstack's key. `Debug` never shows it.
pub struct SigningKey {
    rsa: RsaPrivateKey,
    pkcs1_der: Vec<u8>,
    public: PublicKey,
}

impl SigningKey {
    /// Parses a PEM private key: PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`] when it is not such a key, or not RSA of 2048 to 4096 bits.
    pub fn from_pem(pem: &str) -> Result<Self, ConfigError> {
        let block =
            pem::parse(pem.trim()).map_err(|e| invalid_key(format!("not a PEM key: {e}")))?;
        match block.tag() {
            "RSA PRIVATE KEY" => Self::from_pkcs1_der(block.contents()),
            "PRIVATE KEY" => {
                let info = pkcs8::PrivateKeyInfo::from_der(block.contents())
                    .map_err(|e| invalid_key(format!("not a DER PKCS#8 private key: {e}")))?;
                if info.algorithm.oid != RSA_ENCRYPTION {
                    return Err(invalid_key("the private key is not an RSA key"));
                }
                Self::from_pkcs1_der(info.private_key)
            }
            other => Err(invalid_key(format!(
                "a PEM block `{other}` is not a private key; expected `RSA PRIVATE KEY` or `PRIVATE KEY`"
            ))),
        }
    }

    /// A new RSA-2048 key from the operating system's random source: a dev key pair for local
    /// testing (`countersign keygen`).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`] when generation fails.
    pub fn generate() -> Result<Self, ConfigError> {
        let der = crypto::generate_rsa_2048_pkcs1().map_err(invalid_key)?;
        Self::from_pkcs1_der(&der)
    }

    /// Reads a PEM private key from a file.
    ///
    /// # Errors
    /// As [`from_pem`](Self::from_pem), or when the file cannot be read.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            invalid_key(format!("cannot read the key file {}: {e}", path.display()))
        })?;
        Self::from_pem(&text)
    }

    /// Parses a DER `RSAPrivateKey` (PKCS#1).
    ///
    /// # Errors
    /// As [`from_pem`](Self::from_pem).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, ConfigError> {
        let rsa = RsaPrivateKey::from_pkcs1_der(der).map_err(invalid_key)?;
        let public = PublicKey::from_pkcs1_der(&rsa.public_key_pkcs1_der().map_err(invalid_key)?)?;
        Ok(Self {
            rsa,
            pkcs1_der: der.to_vec(),
            public,
        })
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key as PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`). Keep it secret.
    #[must_use]
    pub fn to_pkcs1_pem(&self) -> String {
        pem_lf(&pem::Pem::new("RSA PRIVATE KEY", self.pkcs1_der.clone()))
    }

    /// Signs a webhook body as Contentstack does: the value of `X-Contentstack-Request-Signature`,
    /// `v1=<base64 of the RSA-PSS/SHA-256 signature>`.
    ///
    /// # Errors
    /// When the crypto library fails to sign (it does not for a parsed key).
    pub fn sign_webhook(&self, body: &[u8], salt: SaltLength) -> Result<String, ConfigError> {
        use base64::Engine as _;
        let signature = self
            .rsa
            .sign_pss_sha256(body, salt.to_pss())
            .map_err(|e| ConfigError::new(ConfigErrorKind::InvalidKey, e))?;
        Ok(format!(
            "v1={}",
            base64::engine::general_purpose::STANDARD.encode(signature)
        ))
    }

    pub(crate) fn jwt_key(&self) -> jsonwebtoken::EncodingKey {
        jsonwebtoken::EncodingKey::from_rsa_der(&self.pkcs1_der)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn pem_lf(block: &pem::Pem) -> String {
    pem::encode_config(
        block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

pub(crate) fn invalid_key(message: impl Into<String>) -> ConfigError {
    ConfigError::new(ConfigErrorKind::InvalidKey, message)
}
