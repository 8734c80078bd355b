//! What the aws-lc backend computes: SHA-256, RSA-PSS, RSA key generation.

use aws_lc_rs::signature::{self, RsaParameters, RsaPssSaltLength, RsaSignatureEncoding};

use super::PssSalt;
use crate::crypto::Backend;

pub(super) const BACKEND: Backend = Backend::AwsLc;

static PSS_DIGEST: RsaParameters = signature::RSA_PSS_2048_8192_SHA256;
static PSS_MAX: RsaParameters =
    signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);
static SIGN_PSS_DIGEST: RsaSignatureEncoding = signature::RSA_PSS_SHA256;
static SIGN_PSS_MAX: RsaSignatureEncoding =
    signature::RSA_PSS_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref());
    out
}

/// A parsed RSA public key, ready to verify RSA-PSS/SHA-256 signatures with either salt length.
#[derive(Clone)]
pub(crate) struct RsaPublicKey {
    pss_digest: signature::ParsedPublicKey,
    pss_max: signature::ParsedPublicKey,
}

impl RsaPublicKey {
    /// Parses a DER `RSAPublicKey` (PKCS#1). The caller has checked the modulus size.
    pub(crate) fn from_pkcs1_der(der: &[u8]) -> Result<Self, String> {
        let parse = |alg: &'static RsaParameters| {
            signature::ParsedPublicKey::new(alg, der)
                .map_err(|e| format!("not a usable RSA public key: {e}"))
        };
        Ok(Self {
            pss_digest: parse(&PSS_DIGEST)?,
            pss_max: parse(&PSS_MAX)?,
        })
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
        let key = match salt {
            PssSalt::Digest => &self.pss_digest,
            PssSalt::Max => &self.pss_max,
        };
        aws_lc_rs::digest::Digest::import_less_safe(digest, &aws_lc_rs::digest::SHA256)
            .is_ok_and(|digest| key.verify_digest_sig(&digest, signature).is_ok())
    }
}

/// An RSA private key, for signing as Contentstack does (tests, the command line, dev mode).
pub(crate) struct RsaPrivateKey {
    key: signature::RsaKeyPair,
}

impl RsaPrivateKey {
    /// Parses a DER `RSAPrivateKey` (PKCS#1).
    pub(crate) fn from_pkcs1_der(der: &[u8]) -> Result<Self, String> {
        let key = signature::RsaKeyPair::from_der(der)
            .map_err(|e| format!("not a usable RSA private key: {e}"))?;
        Ok(Self { key })
    }

    /// The public half, as DER `RSAPublicKey` (PKCS#1).
    pub(crate) fn public_key_pkcs1_der(&self) -> Result<Vec<u8>, String> {
        use signature::KeyPair as _;
        Ok(self.key.public_key().as_ref().to_vec())
    }

    /// Signs `message` with RSASSA-PSS, SHA-256, MGF1-SHA-256 and a random salt.
    pub(crate) fn sign_pss_sha256(&self, message: &[u8], salt: PssSalt) -> Result<Vec<u8>, String> {
        let encoding = match salt {
            PssSalt::Digest => &SIGN_PSS_DIGEST,
            PssSalt::Max => &SIGN_PSS_MAX,
        };
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                encoding,
                &aws_lc_rs::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| "RSA signing failed".to_owned())?;
        Ok(signature)
    }
}

/// Generates an RSA-2048 private key; returns its DER `RSAPrivateKey` (PKCS#1).
pub(crate) fn generate_rsa_2048_pkcs1() -> Result<Vec<u8>, String> {
    use aws_lc_rs::encoding::AsDer as _;
    use pkcs8::der::Decode as _;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| "RSA key generation failed".to_owned())?;
    let pkcs8 = key
        .as_der()
        .map_err(|_| "cannot encode the new key".to_owned())?;
    let info = pkcs8::PrivateKeyInfo::from_der(pkcs8.as_ref())
        .map_err(|e| format!("cannot read the new key: {e}"))?;
    Ok(info.private_key.to_vec())
}

/// Installs jsonwebtoken's aws-lc provider, unless one is installed.
pub(super) fn install_jwt_provider() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}
