//! The HMAC signing method's secret.

use std::fmt;
use std::time::SystemTime;

use crate::crypto::{HMAC_SHA256_LEN, HmacSha256Key};
use crate::error::{ConfigError, ConfigErrorKind};

/// A Contentstack webhook HMAC secret. Its UTF-8 bytes are the key. `Debug` never shows it.
#[derive(Clone)]
pub struct HmacSecret {
    key: HmacSha256Key,
}

impl HmacSecret {
    /// Prepares a secret.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSecret`] when it is empty or only white space.
    pub fn new(secret: impl AsRef<str>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if secret.trim().is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::InvalidSecret,
                "a Contentstack HMAC secret must not be empty",
            ));
        }
        Ok(Self {
            key: HmacSha256Key::new(secret.as_bytes()),
        })
    }

    /// `HMAC-SHA256(secret, "<t>.<body>")`.
    pub(crate) fn mac(&self, t: &str, body: &[u8]) -> [u8; HMAC_SHA256_LEN] {
        let mut mac = self.key.start();
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finish()
    }

    /// Signs a delivery as Contentstack does: the value of `x-contentstack-hmac-signature`,
    /// `t=<unix seconds>,v1=<hex>`.
    #[must_use]
    pub fn sign(&self, body: &[u8], at: SystemTime) -> String {
        let t = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        format!("t={t},v1={}", hex::encode(self.mac(&t, body)))
    }
}

impl fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacSecret(<redacted>)")
    }
}
