//! What the RustCrypto backend computes: SHA-256, RSA-PSS, RSA key generation.

use rsa::traits::PublicKeyParts as _;

use super::PssSalt;
use crate::crypto::Backend;

pub(super) const BACKEND: Backend = Backend::RustCrypto;

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    <sha2::Sha256 as sha2::Digest>::digest(data).into()
}

/// The PSS scheme of `salt` for a modulus of `modulus_bits`: the maximum is
/// `emLen - hLen - 2` for SHA-256.
fn pss(salt: PssSalt, modulus_bits: usize) -> rsa::Pss {
    let salt_len = match salt {
        PssSalt::Digest => 32,
        PssSalt::Max => (modulus_bits - 1).div_ceil(8) - 32 - 2,
    };
    rsa::Pss::new_with_salt::<sha2::Sha256>(salt_len)
}

/// A parsed RSA public key, ready to verify RSA-PSS/SHA-256 signatures with either salt length.
#[derive(Clone)]
pub(crate) struct RsaPublicKey {
    key: rsa::RsaPublicKey,
}

impl RsaPublicKey {
    /// Parses a DER `RSAPublicKey` (PKCS#1). The caller has checked the modulus size.
    pub(crate) fn from_pkcs1_der(der: &[u8]) -> Result<Self, String> {
        use rsa::pkcs1::DecodeRsaPublicKey as _;
        let key = rsa::RsaPublicKey::from_pkcs1_der(der)
            .map_err(|e| format!("not a usable RSA public key: {e}"))?;
        Ok(Self { key })
    }

    /// Verifies an RSASSA-PSS signature with SHA-256 and MGF1-SHA-256 over the message whose
    /// SHA-256 is `digest`, so that a message is hashed once whatever the number of keys,
    /// signatures and salt lengths tried. The caller has checked that the signature, read as
    /// a big-endian integer, is below the modulus (RFC 8017 RSAVP1).
    pub(crate) fn verify_pss_sha256(
        &self,
        digest: &[u8; 32],
        signature: &[u8],
        salt: PssSalt,
    ) -> bool {
        let scheme = pss(salt, self.key.n().bits());
        self.key.verify(scheme, digest, signature).is_ok()
    }
}

/// An RSA private key, for signing as Contentstack does (tests, the command line, dev mode).
pub(crate) struct RsaPrivateKey {
    key: rsa::RsaPrivateKey,
}

impl RsaPrivateKey {
    /// Parses a DER `RSAPrivateKey` (PKCS#1).
    pub(crate) fn from_pkcs1_der(der: &[u8]) -> Result<Self, String> {
        use rsa::pkcs1::DecodeRsaPrivateKey as _;
        let key = rsa::RsaPrivateKey::from_pkcs1_der(der)
            .map_err(|e| format!("not a usable RSA private key: {e}"))?;
        Ok(Self { key })
    }

    /// The public half, as DER `RSAPublicKey` (PKCS#1).
    pub(crate) fn public_key_pkcs1_der(&self) -> Result<Vec<u8>, String> {
        use rsa::pkcs1::EncodeRsaPublicKey as _;
        self.key
            .to_public_key()
            .to_pkcs1_der()
            .map(|doc| doc.as_bytes().to_vec())
            .map_err(|e| format!("cannot encode the public key: {e}"))
    }

    /// Signs `message` with RSASSA-PSS, SHA-256, MGF1-SHA-256 and a random salt.
    pub(crate) fn sign_pss_sha256(&self, message: &[u8], salt: PssSalt) -> Result<Vec<u8>, String> {
        let scheme = pss(salt, self.key.n().bits());
        self.key
            .sign_with_rng(&mut rand_core::OsRng, scheme, &sha256(message))
            .map_err(|e| format!("RSA signing failed: {e}"))
    }
}

/// Generates an RSA-2048 private key; returns its DER `RSAPrivateKey` (PKCS#1).
pub(crate) fn generate_rsa_2048_pkcs1() -> Result<Vec<u8>, String> {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
        .map_err(|e| format!("RSA key generation failed: {e}"))?;
    key.to_pkcs1_der()
        .map(|doc| doc.as_bytes().to_vec())
        .map_err(|e| format!("cannot encode the new key: {e}"))
}

/// Installs jsonwebtoken's RustCrypto provider, unless one is installed.
pub(super) fn install_jwt_provider() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}
