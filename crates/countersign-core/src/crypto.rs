//! The one place that knows which cryptographic library is linked.
//!
//! Everything else calls these functions, so that both backends run the same wire-format code.

#[cfg(not(any(feature = "aws-lc", feature = "rust-crypto")))]
compile_error!(
    "countersign-core needs a crypto backend: enable the `aws-lc` feature (the default) \
     or the `rust-crypto` feature"
);

use hmac::Hmac;
use sha2::Sha256;

use crate::Backend;

/// Length of an HMAC-SHA256 tag in bytes.
pub(crate) const HMAC_SHA256_LEN: usize = 32;

#[cfg(feature = "aws-lc")]
pub(crate) const BACKEND: Backend = Backend::AwsLc;
#[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
pub(crate) const BACKEND: Backend = Backend::RustCrypto;

/// A prepared HMAC-SHA256 key.
///
/// HMAC-SHA256 is computed by RustCrypto's `hmac` wherever the CPU has SHA instructions
/// (x86-64 SHA-NI, AArch64 SHA2), in either build: there it compresses as fast as aws-lc and
/// skips aws-lc's fixed cost per MAC (an `HMAC_CTX` copied, initialised and cleaned up across
/// the FFI, about 140 ns on the benchmark machine, a fifth of a 1 KiB Contentful
/// verification). Without SHA instructions RustCrypto falls back to portable code several
/// times slower than aws-lc's vector assembly, so the aws-lc build uses aws-lc there.
#[derive(Clone)]
pub(crate) struct HmacSha256Key(KeyEngine);

// aws-lc's key and context are some 1,200 bytes each: boxed, so that the RustCrypto case moves
// 200 and the aws-lc case a pointer.
#[derive(Clone)]
enum KeyEngine {
    RustCrypto(Hmac<Sha256>),
    #[cfg(feature = "aws-lc")]
    AwsLc(Box<aws_lc_rs::hmac::Key>),
}

/// An HMAC-SHA256 computation in progress.
pub(crate) struct HmacSha256(MacEngine);

enum MacEngine {
    RustCrypto(Hmac<Sha256>),
    #[cfg(feature = "aws-lc")]
    AwsLc(Box<aws_lc_rs::hmac::Context>),
}

/// Which library computes HMAC-SHA256 for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HmacEngine {
    /// RustCrypto's `hmac` and `sha2`.
    RustCrypto,
    /// aws-lc (the `aws-lc` feature).
    #[cfg(feature = "aws-lc")]
    AwsLc,
}

impl HmacEngine {
    /// The faster library on this CPU, as the type's documentation explains.
    pub(crate) fn fastest() -> Self {
        #[cfg(feature = "aws-lc")]
        {
            static FASTEST: std::sync::OnceLock<HmacEngine> = std::sync::OnceLock::new();
            *FASTEST.get_or_init(|| {
                if cpu_has_sha_instructions() {
                    Self::RustCrypto
                } else {
                    Self::AwsLc
                }
            })
        }
        #[cfg(not(feature = "aws-lc"))]
        Self::RustCrypto
    }
}

/// Whether the CPU has the SHA-256 instructions `sha2` uses (it checks the same at run time).
#[cfg(feature = "aws-lc")]
fn cpu_has_sha_instructions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

impl HmacSha256Key {
    /// Prepares `key` (any length) for HMAC-SHA256, with the faster library on this CPU.
    pub(crate) fn new(key: &[u8]) -> Self {
        Self::with_engine(key, HmacEngine::fastest())
    }

    /// Prepares `key` for HMAC-SHA256 with the given library.
    pub(crate) fn with_engine(key: &[u8], engine: HmacEngine) -> Self {
        Self(match engine {
            HmacEngine::RustCrypto => KeyEngine::RustCrypto(
                <Hmac<Sha256> as hmac::Mac>::new_from_slice(key)
                    .expect("HMAC accepts keys of any length"),
            ),
            #[cfg(feature = "aws-lc")]
            HmacEngine::AwsLc => KeyEngine::AwsLc(Box::new(aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                key,
            ))),
        })
    }

    /// Starts a computation with this key.
    pub(crate) fn start(&self) -> HmacSha256 {
        HmacSha256(match &self.0 {
            KeyEngine::RustCrypto(key) => MacEngine::RustCrypto(key.clone()),
            #[cfg(feature = "aws-lc")]
            KeyEngine::AwsLc(key) => {
                MacEngine::AwsLc(Box::new(aws_lc_rs::hmac::Context::with_key(key)))
            }
        })
    }
}

impl HmacSha256 {
    /// Feeds `data` into the computation.
    pub(crate) fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            MacEngine::RustCrypto(mac) => hmac::Mac::update(mac, data),
            #[cfg(feature = "aws-lc")]
            MacEngine::AwsLc(ctx) => ctx.update(data),
        }
    }

    /// Finishes the computation and returns the tag.
    pub(crate) fn finish(self) -> [u8; HMAC_SHA256_LEN] {
        match self.0 {
            MacEngine::RustCrypto(mac) => hmac::Mac::finalize(mac).into_bytes().into(),
            #[cfg(feature = "aws-lc")]
            MacEngine::AwsLc(ctx) => {
                let mut out = [0u8; HMAC_SHA256_LEN];
                out.copy_from_slice(ctx.sign().as_ref());
                out
            }
        }
    }
}

/// Compares two byte strings in constant time (for equal lengths; the length is not secret),
/// eight bytes at a time.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    if a.len() != b.len() {
        return false;
    }
    let ((a_words, a_rest), (b_words, b_rest)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
    let mut equal = a_rest.ct_eq(b_rest);
    for (x, y) in a_words.iter().zip(b_words) {
        equal &= u64::from_ne_bytes(*x).ct_eq(&u64::from_ne_bytes(*y));
    }
    equal.into()
}

/// Fills `buf` from the operating system's cryptographic random source.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    getrandom::fill(buf)
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    #[cfg(feature = "aws-lc")]
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref());
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
    out.copy_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(data));
    out
}

/// An RSA-PSS salt length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PssSalt {
    /// The digest length: 32 bytes for SHA-256.
    Digest,
    /// The maximum the key allows: `emLen - hLen - 2` (222 for RSA-2048).
    Max,
}

#[cfg(feature = "aws-lc")]
mod aws_lc_rsa {
    use aws_lc_rs::signature::{self, RsaParameters, RsaPssSaltLength, RsaSignatureEncoding};

    pub(super) static PSS_DIGEST: RsaParameters = signature::RSA_PSS_2048_8192_SHA256;
    pub(super) static PSS_MAX: RsaParameters =
        signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);
    pub(super) static SIGN_PSS_DIGEST: RsaSignatureEncoding = signature::RSA_PSS_SHA256;
    pub(super) static SIGN_PSS_MAX: RsaSignatureEncoding =
        signature::RSA_PSS_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);
}

/// Smallest and largest RSA modulus accepted, in bits (both backends agree on this range).
pub(crate) const RSA_MIN_BITS: usize = 2048;
pub(crate) const RSA_MAX_BITS: usize = 4096;

/// A parsed RSA public key, ready to verify RSA-PSS/SHA-256 signatures.
#[derive(Clone)]
pub(crate) struct RsaPublicKey {
    #[cfg(feature = "aws-lc")]
    pss_digest: aws_lc_rs::signature::ParsedPublicKey,
    #[cfg(feature = "aws-lc")]
    pss_max: aws_lc_rs::signature::ParsedPublicKey,
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
    key: rsa::RsaPublicKey,
}

impl RsaPublicKey {
    /// Parses a DER `RSAPublicKey` (PKCS#1). The caller has checked the modulus size.
    pub(crate) fn from_pkcs1_der(der: &[u8]) -> Result<Self, String> {
        #[cfg(feature = "aws-lc")]
        {
            use aws_lc_rs::signature::ParsedPublicKey;
            let parse = |alg: &'static aws_lc_rs::signature::RsaParameters| {
                ParsedPublicKey::new(alg, der)
                    .map_err(|e| format!("not a usable RSA public key: {e}"))
            };
            Ok(Self {
                pss_digest: parse(&aws_lc_rsa::PSS_DIGEST)?,
                pss_max: parse(&aws_lc_rsa::PSS_MAX)?,
            })
        }
        #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
        {
            use rsa::pkcs1::DecodeRsaPublicKey as _;
            let key = rsa::RsaPublicKey::from_pkcs1_der(der)
                .map_err(|e| format!("not a usable RSA public key: {e}"))?;
            Ok(Self { key })
        }
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
        #[cfg(feature = "aws-lc")]
        {
            let key = match salt {
                PssSalt::Digest => &self.pss_digest,
                PssSalt::Max => &self.pss_max,
            };
            aws_lc_rs::digest::Digest::import_less_safe(digest, &aws_lc_rs::digest::SHA256)
                .is_ok_and(|digest| key.verify_digest_sig(&digest, signature).is_ok())
        }
        #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
        {
            use rsa::traits::PublicKeyParts as _;
            let salt_len = match salt {
                PssSalt::Digest => 32,
                PssSalt::Max => pss_max_salt(self.key.n().bits()),
            };
            let scheme = rsa::Pss::new_with_salt::<sha2::Sha256>(salt_len);
            self.key.verify(scheme, digest, signature).is_ok()
        }
    }
}

/// `emLen - hLen - 2` for SHA-256.
#[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
fn pss_max_salt(modulus_bits: usize) -> usize {
    (modulus_bits - 1).div_ceil(8) - 32 - 2
}

/// An RSA private key, for signing as Contentstack does (tests, the command line, dev mode).
pub(crate) struct RsaPrivateKey {
    #[cfg(feature = "aws-lc")]
    key: aws_lc_rs::signature::RsaKeyPair,
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
    key: rsa::RsaPrivateKey,
}

impl RsaPrivateKey {
    /// Parses a DER `RSAPrivateKey` (PKCS#1).
    pub(crate) fn from_pkcs1_der(der: &[u8]) -> Result<Self, String> {
        #[cfg(feature = "aws-lc")]
        {
            let key = aws_lc_rs::signature::RsaKeyPair::from_der(der)
                .map_err(|e| format!("not a usable RSA private key: {e}"))?;
            Ok(Self { key })
        }
        #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
        {
            use rsa::pkcs1::DecodeRsaPrivateKey as _;
            let key = rsa::RsaPrivateKey::from_pkcs1_der(der)
                .map_err(|e| format!("not a usable RSA private key: {e}"))?;
            Ok(Self { key })
        }
    }

    /// The public half, as DER `RSAPublicKey` (PKCS#1).
    pub(crate) fn public_key_pkcs1_der(&self) -> Result<Vec<u8>, String> {
        #[cfg(feature = "aws-lc")]
        {
            use aws_lc_rs::signature::KeyPair as _;
            Ok(self.key.public_key().as_ref().to_vec())
        }
        #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
        {
            use rsa::pkcs1::EncodeRsaPublicKey as _;
            self.key
                .to_public_key()
                .to_pkcs1_der()
                .map(|doc| doc.as_bytes().to_vec())
                .map_err(|e| format!("cannot encode the public key: {e}"))
        }
    }

    /// Signs `message` with RSASSA-PSS, SHA-256, MGF1-SHA-256 and a random salt.
    pub(crate) fn sign_pss_sha256(&self, message: &[u8], salt: PssSalt) -> Result<Vec<u8>, String> {
        #[cfg(feature = "aws-lc")]
        {
            let encoding = match salt {
                PssSalt::Digest => &aws_lc_rsa::SIGN_PSS_DIGEST,
                PssSalt::Max => &aws_lc_rsa::SIGN_PSS_MAX,
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
        #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
        {
            use rsa::traits::PublicKeyParts as _;
            let salt_len = match salt {
                PssSalt::Digest => 32,
                PssSalt::Max => pss_max_salt(self.key.n().bits()),
            };
            let scheme = rsa::Pss::new_with_salt::<sha2::Sha256>(salt_len);
            self.key
                .sign_with_rng(&mut rand_core::OsRng, scheme, &sha256(message))
                .map_err(|e| format!("RSA signing failed: {e}"))
        }
    }
}

/// Generates an RSA-2048 private key; returns its DER `RSAPrivateKey` (PKCS#1).
pub(crate) fn generate_rsa_2048_pkcs1() -> Result<Vec<u8>, String> {
    #[cfg(feature = "aws-lc")]
    {
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
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
    {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
            .map_err(|e| format!("RSA key generation failed: {e}"))?;
        key.to_pkcs1_der()
            .map(|doc| doc.as_bytes().to_vec())
            .map_err(|e| format!("cannot encode the new key: {e}"))
    }
}

/// Makes sure jsonwebtoken has a crypto provider. It picks one from its features, and panics
/// when both are on (as with `--all-features`, or when the application enables the other one
/// on its own `jsonwebtoken`) unless one was installed: install ours first, once. A provider
/// the application installed before stays.
pub(crate) fn ensure_jwt_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        #[cfg(feature = "aws-lc")]
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engines() -> Vec<HmacEngine> {
        vec![
            HmacEngine::RustCrypto,
            #[cfg(feature = "aws-lc")]
            HmacEngine::AwsLc,
        ]
    }

    // RFC 4231, test cases 2 (a short key) and 6 (a key longer than the block, hashed first).
    #[test]
    fn hmac_sha256_matches_rfc_4231_with_either_library() {
        for engine in engines() {
            let key = HmacSha256Key::with_engine(b"Jefe", engine);
            let mut mac = key.start();
            mac.update(b"what do ya want ");
            mac.update(b"for nothing?");
            assert_eq!(
                hex::encode(mac.finish()),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                "{engine:?}"
            );
            let key = HmacSha256Key::with_engine(&[0xaa; 131], engine);
            let mut mac = key.start();
            mac.update(b"Test Using Larger Than Block-Size Key - Hash Key First");
            assert_eq!(
                hex::encode(mac.finish()),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                "{engine:?}"
            );
        }
    }

    #[test]
    fn both_libraries_agree_on_every_length_around_the_block() {
        let engines = engines();
        let data: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for key_len in [0, 1, 32, 63, 64, 65, 200] {
            let keys: Vec<_> = engines
                .iter()
                .map(|engine| HmacSha256Key::with_engine(&data[..key_len], *engine))
                .collect();
            for len in [0, 1, 55, 56, 63, 64, 65, 119, 128, 300] {
                let tags: Vec<_> = keys
                    .iter()
                    .map(|key| {
                        let mut mac = key.start();
                        let (a, b) = data[..len].split_at(len / 3);
                        mac.update(a);
                        mac.update(b);
                        mac.finish()
                    })
                    .collect();
                assert!(
                    tags.windows(2).all(|w| w[0] == w[1]),
                    "key {key_len}, data {len}"
                );
            }
        }
    }

    #[test]
    fn the_faster_library_is_rust_crypto_exactly_where_the_cpu_has_sha_instructions() {
        #[cfg(feature = "aws-lc")]
        assert_eq!(
            HmacEngine::fastest() == HmacEngine::RustCrypto,
            cpu_has_sha_instructions()
        );
        #[cfg(not(feature = "aws-lc"))]
        assert_eq!(HmacEngine::fastest(), HmacEngine::RustCrypto);
    }

    #[test]
    fn constant_time_eq_compares_every_byte_and_the_length() {
        let a: Vec<u8> = (0..37).collect();
        assert!(constant_time_eq(&a, &a.clone()));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(&a, &a[..36]));
        for at in [0, 7, 8, 31, 32, 36] {
            let mut b = a.clone();
            b[at] ^= 0x80;
            assert!(!constant_time_eq(&a, &b), "a difference at byte {at}");
        }
    }

    #[test]
    fn backend_is_aws_lc_whenever_its_feature_is_on() {
        let expected = if cfg!(feature = "aws-lc") {
            Backend::AwsLc
        } else {
            Backend::RustCrypto
        };
        assert_eq!(crate::backend(), expected);
    }
}
