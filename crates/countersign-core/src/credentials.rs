//! Shared-secret checks Contentstack offers besides signatures: Basic auth and custom headers.
//!
//! Each accepted value is kept as its SHA-256 digest and compared in constant time against the
//! digest of what arrived, so neither the length nor the content of a secret leaks through
//! timing, and every configured value is compared (no early exit that would tell which one
//! was close).

use std::fmt;

use base64::Engine as _;
use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};

use crate::crypto::sha256;
use crate::error::{ConfigError, ConfigErrorKind};

crate::reason_kind! {
    /// Why a credential check failed.
    pub enum CredentialError {
        /// No `Authorization: Basic` header.
        BasicAuthMissing => BASIC_AUTH_MISSING,
        /// The `Authorization` header is not `Basic base64(user:password)`.
        BasicAuthMalformed => BASIC_AUTH_MALFORMED,
        /// The user and password match no configured pair.
        BasicAuthMismatch => BASIC_AUTH_MISMATCH,
        /// A required header is absent.
        HeaderMissing => HEADER_MISSING,
        /// A required header has none of its accepted values.
        HeaderMismatch => HEADER_MISMATCH,
    }
}

impl std::error::Error for CredentialError {}

type Digest = [u8; 32];

/// Compares two byte strings in constant time (for equal lengths; unequal lengths differ).
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    crate::crypto::constant_time_eq(a, b)
}

fn any_matches(accepted: &[Digest], candidate: &[u8]) -> bool {
    let candidate = sha256(candidate);
    accepted.iter().fold(false, |found, digest| {
        constant_time_eq(digest, &candidate) | found
    })
}

/// The `user:password` pairs accepted in `Authorization: Basic`; several for a rotation.
#[derive(Clone)]
pub struct BasicAuth {
    accepted: Vec<Digest>,
}

impl BasicAuth {
    /// Accepts these `user:password` pairs.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSecret`] when there is none, or one has no `:`, an empty user or
    /// an empty password.
    pub fn new<I, S>(pairs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut accepted = Vec::new();
        for (i, pair) in pairs.into_iter().enumerate() {
            let pair = pair.as_ref();
            match pair.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    accepted.push(sha256(pair.as_bytes()));
                }
                _ => {
                    return Err(ConfigError::new(
                        ConfigErrorKind::InvalidSecret,
                        format!("Basic auth credential {} is not user:password", i + 1),
                    ));
                }
            }
        }
        if accepted.is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::InvalidSecret,
                "Basic auth needs a user:password",
            ));
        }
        Ok(Self { accepted })
    }

    /// Checks the request's `Authorization` header.
    ///
    /// # Errors
    /// A [`CredentialError`] saying what is wrong.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), CredentialError> {
        let value = headers
            .get(AUTHORIZATION)
            .ok_or(CredentialError::BasicAuthMissing)?;
        let value = value
            .to_str()
            .map_err(|_| CredentialError::BasicAuthMalformed)?;
        let (scheme, encoded) = value
            .trim()
            .split_once(' ')
            .ok_or(CredentialError::BasicAuthMalformed)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(CredentialError::BasicAuthMalformed);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| CredentialError::BasicAuthMalformed)?;
        if any_matches(&self.accepted, &decoded) {
            Ok(())
        } else {
            Err(CredentialError::BasicAuthMismatch)
        }
    }
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BasicAuth(<{} redacted>)", self.accepted.len())
    }
}

/// Headers a request must carry, each with one of its accepted values (several for a
/// rotation): the custom headers configured on a Contentstack webhook.
#[derive(Clone, Default)]
pub struct RequiredHeaders {
    headers: Vec<(HeaderName, Vec<Digest>)>,
}

impl RequiredHeaders {
    /// No header required yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `name` with one of `values`.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSetting`] when `name` is not a header name, `values` is empty,
    /// or a value is empty once trimmed (what an unset environment variable gives: it would
    /// admit a request that sends the header empty).
    pub fn with_header<I, S>(mut self, name: &str, values: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let header = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            ConfigError::new(
                ConfigErrorKind::InvalidSetting,
                format!("{name:?} is not a header name"),
            )
        })?;
        let digests = values
            .into_iter()
            .map(|v| match v.as_ref().trim() {
                "" => Err(ConfigError::new(
                    ConfigErrorKind::InvalidSetting,
                    format!("an accepted value of the required header {name} is empty"),
                )),
                value => Ok(sha256(value.as_bytes())),
            })
            .collect::<Result<Vec<Digest>, _>>()?;
        if digests.is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::InvalidSetting,
                format!("the required header {name} needs at least one accepted value"),
            ));
        }
        self.headers.push((header, digests));
        Ok(self)
    }

    /// The names of the required headers: they carry shared secrets, so the layer marks them
    /// sensitive for tracing.
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        self.headers.iter().map(|(name, _)| name)
    }

    /// Checks every required header.
    ///
    /// # Errors
    /// A [`CredentialError`] and the name of the header that failed.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), (CredentialError, HeaderName)> {
        for (name, accepted) in &self.headers {
            let value = headers
                .get(name)
                .ok_or_else(|| (CredentialError::HeaderMissing, name.clone()))?;
            if !any_matches(accepted, value.as_bytes().trim_ascii()) {
                return Err((CredentialError::HeaderMismatch, name.clone()));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for RequiredHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("RequiredHeaders")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(AUTHORIZATION, value.parse().unwrap());
        map
    }

    fn basic(pair: &str) -> HeaderMap {
        auth(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        ))
    }

    #[test]
    fn basic_auth_accepts_any_configured_pair() {
        let check = BasicAuth::new(["hook:old-pass", "hook:new-pass"]).unwrap();
        assert_eq!(check.check(&basic("hook:old-pass")), Ok(()));
        assert_eq!(check.check(&basic("hook:new-pass")), Ok(()));
        assert_eq!(
            check.check(&basic("hook:other")),
            Err(CredentialError::BasicAuthMismatch)
        );
        assert_eq!(
            check.check(&HeaderMap::new()),
            Err(CredentialError::BasicAuthMissing)
        );
        assert_eq!(
            check.check(&auth("Bearer x")),
            Err(CredentialError::BasicAuthMalformed)
        );
        assert_eq!(
            check.check(&auth("Basic %%%")),
            Err(CredentialError::BasicAuthMalformed)
        );
        assert_eq!(check.check(&auth("basic aG9vazpvbGQtcGFzcw==")), Ok(()));
    }

    #[test]
    fn basic_auth_configuration_is_checked() {
        assert!(BasicAuth::new(["nocolon"]).is_err());
        assert!(BasicAuth::new([":pass"]).is_err());
        assert!(BasicAuth::new(Vec::<String>::new()).is_err());
        assert!(!format!("{:?}", BasicAuth::new(["u:secret-pass"]).unwrap()).contains("secret"));
    }

    #[test]
    fn an_empty_accepted_value_is_a_configuration_error() {
        // An unset environment variable gives "": it would admit `X-Hook-Token:` sent empty.
        for values in [vec![""], vec!["  "], vec!["good", ""]] {
            let err = RequiredHeaders::new()
                .with_header("X-Hook-Token", values.clone())
                .unwrap_err();
            assert_eq!(err.kind(), ConfigErrorKind::InvalidSetting, "{values:?}");
        }
    }

    #[test]
    fn required_headers_accept_any_configured_value() {
        let required = RequiredHeaders::new()
            .with_header("X-Hook-Token", ["old", "new"])
            .unwrap();
        let mut map = HeaderMap::new();
        assert_eq!(
            required.check(&map).unwrap_err().0,
            CredentialError::HeaderMissing
        );
        map.insert("x-hook-token", "new".parse().unwrap());
        assert!(required.check(&map).is_ok());
        map.insert("x-hook-token", "newer".parse().unwrap());
        assert_eq!(
            required.check(&map).unwrap_err().0,
            CredentialError::HeaderMismatch
        );
        assert!(
            RequiredHeaders::new()
                .with_header("bad name", ["v"])
                .is_err()
        );
        assert!(
            RequiredHeaders::new()
                .with_header("x", Vec::<String>::new())
                .is_err()
        );
    }
}
