//! HMAC-SHA256, by RustCrypto or aws-lc, whichever is faster on this CPU.

use hmac::Hmac;
use sha2::Sha256;

use super::HMAC_SHA256_LEN;

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
pub(super) fn cpu_has_sha_instructions() -> bool {
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

    /// The tag of `first` followed by `second`, in one call: the prepared key is copied once,
    /// and the computation stays in this frame.
    pub(crate) fn mac2(&self, first: &[u8], second: &[u8]) -> [u8; HMAC_SHA256_LEN] {
        match &self.0 {
            KeyEngine::RustCrypto(key) => {
                let mut mac = key.clone();
                hmac::Mac::update(&mut mac, first);
                hmac::Mac::update(&mut mac, second);
                hmac::Mac::finalize(mac).into_bytes().into()
            }
            #[cfg(feature = "aws-lc")]
            KeyEngine::AwsLc(key) => {
                let mut ctx = aws_lc_rs::hmac::Context::with_key(key);
                ctx.update(first);
                ctx.update(second);
                let mut out = [0u8; HMAC_SHA256_LEN];
                out.copy_from_slice(ctx.sign().as_ref());
                out
            }
        }
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
