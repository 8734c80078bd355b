//! The one place that knows which cryptographic library is linked.
//!
//! Everything else calls these functions, so that both backends run the same wire-format code.

#[cfg(not(any(feature = "aws-lc", feature = "rust-crypto")))]
compile_error!(
    "countersign-core needs a crypto backend: enable the `aws-lc` feature (the default) \
     or the `rust-crypto` feature"
);

use crate::Backend;

/// Length of an HMAC-SHA256 tag in bytes.
pub(crate) const HMAC_SHA256_LEN: usize = 32;

#[cfg(feature = "aws-lc")]
pub(crate) const BACKEND: Backend = Backend::AwsLc;
#[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
pub(crate) const BACKEND: Backend = Backend::RustCrypto;

/// A prepared HMAC-SHA256 key.
#[derive(Clone)]
pub(crate) struct HmacSha256Key {
    #[cfg(feature = "aws-lc")]
    key: aws_lc_rs::hmac::Key,
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
    key: hmac::Hmac<sha2::Sha256>,
}

/// An HMAC-SHA256 computation in progress.
pub(crate) struct HmacSha256 {
    #[cfg(feature = "aws-lc")]
    ctx: aws_lc_rs::hmac::Context,
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
    ctx: hmac::Hmac<sha2::Sha256>,
}

impl HmacSha256Key {
    /// Prepares `key` (any length) for HMAC-SHA256.
    pub(crate) fn new(key: &[u8]) -> Self {
        #[cfg(feature = "aws-lc")]
        {
            Self {
                key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
            }
        }
        #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
        {
            use hmac::Mac as _;
            Self {
                key: hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
                    .expect("HMAC accepts keys of any length"),
            }
        }
    }

    /// Starts a computation with this key.
    pub(crate) fn start(&self) -> HmacSha256 {
        #[cfg(feature = "aws-lc")]
        {
            HmacSha256 {
                ctx: aws_lc_rs::hmac::Context::with_key(&self.key),
            }
        }
        #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
        {
            HmacSha256 {
                ctx: self.key.clone(),
            }
        }
    }
}

impl HmacSha256 {
    /// Feeds `data` into the computation.
    pub(crate) fn update(&mut self, data: &[u8]) {
        #[cfg(feature = "aws-lc")]
        self.ctx.update(data);
        #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
        hmac::Mac::update(&mut self.ctx, data);
    }

    /// Finishes the computation and returns the tag.
    pub(crate) fn finish(self) -> [u8; HMAC_SHA256_LEN] {
        let mut out = [0u8; HMAC_SHA256_LEN];
        #[cfg(feature = "aws-lc")]
        out.copy_from_slice(self.ctx.sign().as_ref());
        #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
        out.copy_from_slice(&hmac::Mac::finalize(self.ctx).into_bytes());
        out
    }
}

/// Compares two byte strings in constant time (for equal lengths).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

/// Fills `buf` from the operating system's cryptographic random source.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    getrandom::fill(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231, test case 2.
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let key = HmacSha256Key::new(b"Jefe");
        let mut mac = key.start();
        mac.update(b"what do ya want ");
        mac.update(b"for nothing?");
        assert_eq!(
            hex::encode(mac.finish()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
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
