//! The one place that knows which cryptographic library is linked, and the RSA keys both
//! providers' schemes share ([`SigningKey`], [`PublicKey`], [`SaltLength`]).
//!
//! Everything else calls these functions, so that both backends run the same wire-format code.
//! What differs by backend is in `aws_lc` and `rust_crypto`, each with the same items: SHA-256,
//! RSA-PSS keys, RSA key generation and jsonwebtoken's provider. HMAC-SHA256 picks its library
//! per CPU in either build (`hmac`).

#[cfg(not(any(feature = "aws-lc", feature = "rust-crypto")))]
compile_error!(
    "countersign-core needs a crypto backend: enable the `aws-lc` feature (the default) \
     or the `rust-crypto` feature"
);

#[cfg(feature = "aws-lc")]
mod aws_lc;
mod hmac;
mod keys;
#[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
mod rust_crypto;
#[cfg(test)]
mod tests;

#[cfg(feature = "aws-lc")]
use aws_lc as linked;
#[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
use rust_crypto as linked;

pub(crate) use hmac::HmacSha256Key;
pub(crate) use linked::{RsaPrivateKey, RsaPublicKey, generate_rsa_2048_pkcs1, sha256};

use crate::error::{ConfigError, ConfigErrorKind};

pub(crate) use keys::invalid_key;
pub use keys::{PublicKey, SaltLength, SigningKey};

/// Length of an HMAC-SHA256 tag in bytes.
pub(crate) const HMAC_SHA256_LEN: usize = 32;

/// The backend linked: aws-lc whenever its feature is on.
pub(crate) const BACKEND: Backend = linked::BACKEND;

/// Smallest and largest RSA modulus accepted, in bits (both backends agree on this range).
pub(crate) const RSA_MIN_BITS: usize = 2048;
pub(crate) const RSA_MAX_BITS: usize = 4096;

/// An RSA-PSS salt length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PssSalt {
    /// The digest length: 32 bytes for SHA-256.
    Digest,
    /// The maximum the key allows: `emLen - hLen - 2` (222 for RSA-2048).
    Max,
}

/// Compares two byte strings in constant time (for equal lengths; the length is not secret):
/// the differences of all bytes, eight at a time, are gathered with no branch, and only their
/// sum is compared. The running difference passes an optimization barrier at every word, so
/// that the compiler cannot end the loop once it is known to be non-zero.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    if a.len() != b.len() {
        return false;
    }
    let ((a_words, a_rest), (b_words, b_rest)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
    let mut difference = 0u64;
    for (x, y) in a_words.iter().zip(b_words) {
        difference =
            core::hint::black_box(difference | (u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y)));
    }
    for (x, y) in a_rest.iter().zip(b_rest) {
        difference |= u64::from(x ^ y);
    }
    difference.ct_eq(&0).into()
}

/// Fills `buf` from the operating system's cryptographic random source.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    getrandom::fill(buf)
}

/// Makes sure jsonwebtoken has a crypto provider. It picks one from its features, and panics
/// when both are on (as with `--all-features`, or when the application enables the other one
/// on its own `jsonwebtoken`) unless one was installed: install ours first, once. A provider
/// the application installed before stays.
pub(crate) fn ensure_jwt_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(linked::install_jwt_provider);
}

/// The cryptographic library a build of this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// aws-lc-rs, the default (`aws-lc` feature).
    AwsLc,
    /// The pure-Rust RustCrypto crates (`rust-crypto` feature, without `aws-lc`).
    RustCrypto,
}

/// The crypto backend this build uses: aws-lc when its feature is on, RustCrypto otherwise.
#[must_use]
pub const fn backend() -> Backend {
    BACKEND
}

/// `bytes` random bytes from the operating system's cryptographic random source, in lower-case
/// hex: for session ids, claim owners, dev secrets.
///
/// # Errors
/// [`ConfigErrorKind::RandomSource`] when the random source fails.
pub fn random_hex(bytes: usize) -> Result<String, ConfigError> {
    let mut buf = vec![0u8; bytes];
    fill_random(&mut buf).map_err(|e| {
        ConfigError::new(
            ConfigErrorKind::RandomSource,
            format!("the random source failed: {e}"),
        )
    })?;
    Ok(hex::encode(buf))
}
