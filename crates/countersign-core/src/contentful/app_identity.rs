//! App identity: an app backend's access token for the Content Management API, as the
//! toolkit's `getManagementToken` obtains it.
//!
//! An app registers a key pair (App Keys) and its backend keeps the private key. To act in a
//! space environment where the app is installed, the backend
//!
//! 1. mints a one-time token ([`one_time_token`]): an RS256 JWT whose issuer is the **app
//!    definition id** (the toolkit calls it `appInstallationId`, but it is the definition's
//!    id), valid for ten minutes, with the key id in its header when the app has several keys;
//! 2. exchanges it: `POST {host}/spaces/{space}/environments/{environment}/app_installations/
//!    {app definition id}/access_tokens` with `Authorization: Bearer <one-time token>`
//!    ([`TokenRequest`]);
//! 3. reads the answer ([`read_answer`]): `201` with `{"token": ...}`, an access token for that
//!    one space environment, valid for about ten minutes.
//!
//! This module is the pure part: the token's bytes, the request, the reading of the answer,
//! and the retry rules ([`retry_delay`]). The `countersign` crate's `app_identity` module (feature
//! `app-identity`) runs the exchange with a cache per space environment, one fetch at a time,
//! refreshes before expiry, and the retries; `countersign contentful access-token` runs it once.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use countersign_core::contentful::app_identity::{AppKey, TokenRequest, one_time_token};
//!
//! # fn main() -> Result<(), countersign_core::ConfigError> {
//! # let pem = include_str!("../../tests/data/keys/contentstack-a.private.pem");
//! let key = AppKey::from_pem(pem)?;
//! let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let jwt = one_time_token(&key, "5GqqNVnhR8ZPI3ZKOvpArP", Some("key-1"), now)?;
//! assert_eq!(jwt.split('.').count(), 3);
//!
//! let request = TokenRequest::new("https://api.eu.contentful.com", "space1", "master", "5GqqNVnhR8ZPI3ZKOvpArP")?;
//! assert_eq!(
//!     request.url(),
//!     "https://api.eu.contentful.com/spaces/space1/environments/master/app_installations/5GqqNVnhR8ZPI3ZKOvpArP/access_tokens"
//! );
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::crypto::SigningKey;
use crate::error::{ConfigError, ConfigErrorKind};

/// The Content Management API of accounts in the default (US) data region.
pub const DEFAULT_HOST: &str = "https://api.contentful.com";
/// The Content Management API of accounts in the EU data region.
pub const EU_HOST: &str = "https://api.eu.contentful.com";
/// How long a one-time token is valid: the toolkit's `expiresIn: "10m"`.
pub const ONE_TIME_TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// The header of a `429` that says in how many seconds the rate limit resets.
pub const RATE_LIMIT_RESET: &str = "x-contentful-ratelimit-reset";
/// The longest an id may be (space, environment, app definition, key).
pub const MAX_ID_LEN: usize = 64;

/// The private key of an app's key pair (App Keys): RSA, PEM, PKCS#1 or PKCS#8. `Debug` never
/// shows it.
pub struct AppKey {
    key: SigningKey,
}

impl AppKey {
    /// Parses a PEM private key: PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`] when it is not an RSA private key of 2048 to 4096 bits.
    pub fn from_pem(pem: &str) -> Result<Self, ConfigError> {
        SigningKey::from_pem(pem).map(|key| Self { key })
    }

    /// Reads a PEM private key from a file.
    ///
    /// # Errors
    /// As [`from_pem`](Self::from_pem), or when the file cannot be read.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        SigningKey::from_file(path).map(|key| Self { key })
    }

    /// A new RSA-2048 key, for tests and local development.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`] when generation fails.
    pub fn generate() -> Result<Self, ConfigError> {
        SigningKey::generate().map(|key| Self { key })
    }

    /// The public half as PKCS#1 PEM (`BEGIN RSA PUBLIC KEY`): what Contentful holds.
    #[must_use]
    pub fn public_key_pem(&self) -> String {
        self.key.public_key().to_pkcs1_pem()
    }

    /// The SHA-256 fingerprint of the public half, in hex: safe to log.
    #[must_use]
    pub fn fingerprint(&self) -> &str {
        self.key.public_key().fingerprint()
    }
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Mints the one-time token exactly as the toolkit does (`jsonwebtoken`'s
/// `sign({}, key, {algorithm: "RS256", issuer, expiresIn: "10m", keyid})`): the header
/// `{"alg":"RS256","typ":"JWT","kid":<key id>}` (no `kid` without a key id), the claims
/// `{"iat":<now>,"exp":<now + 600>,"iss":<app definition id>}`, in that order, `now` in whole
/// seconds. RS256 is deterministic, so the same inputs give the toolkit's very bytes.
///
/// # Errors
/// [`ConfigErrorKind::InvalidSetting`] when an id is not a Contentful id (see
/// [`TokenRequest::new`]); [`ConfigErrorKind::InvalidKey`] when the key cannot sign.
pub fn one_time_token(
    key: &AppKey,
    app_definition_id: &str,
    key_id: Option<&str>,
    now: SystemTime,
) -> Result<String, ConfigError> {
    validate_id("app definition id", app_definition_id)?;
    if let Some(key_id) = key_id {
        validate_id("key id", key_id)?;
    }
    let iat = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let exp = iat.saturating_add(ONE_TIME_TOKEN_LIFETIME.as_secs());
    // Ids are checked to be plain ASCII without quotes or backslashes: nothing to escape.
    let header = match key_id {
        Some(kid) => format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}"}}"#),
        None => r#"{"alg":"RS256","typ":"JWT"}"#.to_owned(),
    };
    let claims = format!(r#"{{"iat":{iat},"exp":{exp},"iss":"{app_definition_id}"}}"#);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let message = format!("{}.{}", b64.encode(header), b64.encode(claims));
    crate::crypto::ensure_jwt_provider();
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &key.key.jwt_key(),
        jsonwebtoken::Algorithm::RS256,
    )
    .map_err(|e| {
        ConfigError::new(
            ConfigErrorKind::InvalidKey,
            format!("cannot sign the one-time token: {e}"),
        )
    })?;
    Ok(format!("{message}.{signature}"))
}

/// The exchange of a one-time token for an access token to one space environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenRequest {
    url: String,
}

impl TokenRequest {
    /// The request to `host` (`https://api.contentful.com`, [`EU_HOST`], or plain `http` to this
    /// machine for tests) for the app `app_definition_id` in `space_id`/`environment_id`.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSetting`] when the host is not `https` (plain `http` to this
    /// machine excepted) or has a path, query or fragment, or an id is empty, longer than
    /// [`MAX_ID_LEN`], `.` or `..`, or has characters other than letters, digits, `-`, `_` and
    /// `.` (Contentful's ids), so that no id can change the path.
    pub fn new(
        host: &str,
        space_id: &str,
        environment_id: &str,
        app_definition_id: &str,
    ) -> Result<Self, ConfigError> {
        let host = validate_host(host)?;
        validate_id("space id", space_id)?;
        validate_id("environment id", environment_id)?;
        validate_id("app definition id", app_definition_id)?;
        Ok(Self {
            url: format!(
                "{host}/spaces/{space_id}/environments/{environment_id}/app_installations/{app_definition_id}/access_tokens"
            ),
        })
    }

    /// Where to `POST`, with no body.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `Authorization` value for `one_time_token`, marked sensitive.
    ///
    /// # Errors
    /// When the token has bytes a header cannot hold (a token from [`one_time_token`] has none).
    pub fn authorization(
        one_time_token: &str,
    ) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
        let mut value = HeaderValue::try_from(format!("Bearer {one_time_token}"))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// An access token for one space environment. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    token: String,
    expires_at: SystemTime,
}

impl AccessToken {
    /// A token, valid until `expires_at`.
    #[must_use]
    pub fn new(token: impl Into<String>, expires_at: SystemTime) -> Self {
        Self {
            token: token.into(),
            expires_at,
        }
    }

    /// The token itself, for the `Authorization: Bearer` header of your calls. Keep it out of
    /// logs.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.token
    }

    /// `Bearer <token>` as a header value, marked sensitive.
    ///
    /// # Errors
    /// When the token has bytes a header cannot hold.
    pub fn authorization(&self) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
        TokenRequest::authorization(&self.token)
    }

    /// When it expires: its `exp` claim, or the time it was read when it has none (then it
    /// is used once and not kept).
    #[must_use]
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// Whether it is still good for `margin` at `now`.
    #[must_use]
    pub fn is_fresh(&self, now: SystemTime, margin: Duration) -> bool {
        now.checked_add(margin)
            .is_some_and(|later| later < self.expires_at)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What the exchange's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `201` with a token.
    Issued(AccessToken),
    /// `429`: wait this long, from `X-Contentful-RateLimit-Reset` or `Retry-After` (`None`
    /// when neither says), then try again.
    RateLimited(Option<Duration>),
    /// `5xx`: the host failed; try again after a backoff ([`retry_delay`]).
    ServerError(StatusCode),
    /// Any other status, or a `201` without a token: do not try again with the same inputs.
    Refused(Refusal),
}

/// Why the host refused: its status and the reason it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The answer's status.
    pub status: StatusCode,
    /// The host's reason: its error id and message (`AccessDenied: ...`), at most 300
    /// characters of printable text, or what was wrong with a `201`.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.reason)
    }
}

/// Reads the exchange's answer, at `now`.
#[must_use]
pub fn read_answer(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Answer {
    match status.as_u16() {
        201 => match token_of(body) {
            Some(token) => {
                let expires_at = expiry_of(&token).unwrap_or(now);
                Answer::Issued(AccessToken::new(token, expires_at))
            }
            None => Answer::Refused(Refusal {
                status,
                reason: "the answer has no `token` string".to_owned(),
            }),
        },
        429 => Answer::RateLimited(rate_limit_wait(headers, now)),
        500..=599 => Answer::ServerError(status),
        _ => Answer::Refused(Refusal {
            status,
            reason: reason_of(status, body),
        }),
    }
}

/// How long to wait before attempt `attempt + 1` after a server error or a failed connection:
/// 250 ms doubled per attempt, at most 8 s, with up to a quarter added at random so that a
/// fleet does not retry in step.
#[must_use]
pub fn retry_delay(attempt: u32) -> Duration {
    let base = Duration::from_millis(250)
        .saturating_mul(1 << attempt.min(5))
        .min(Duration::from_secs(8));
    let mut byte = [0u8; 1];
    let jitter = match crate::crypto::fill_random(&mut byte) {
        Ok(()) => base / 4 * u32::from(byte[0]) / 255,
        Err(_) => Duration::ZERO,
    };
    base + jitter
}

fn token_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Issued {
        token: String,
    }
    serde_json::from_slice::<Issued>(body)
        .ok()
        .map(|issued| issued.token)
        .filter(|token| !token.is_empty())
}

/// The `exp` of a JWT, read without verifying it: the host just issued it over a secure
/// connection, and the only use is knowing when to fetch the next.
fn expiry_of(token: &str) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct Expiry {
        exp: u64,
    }
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let Expiry { exp } = serde_json::from_slice(&json).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(exp))
}

/// `X-Contentful-RateLimit-Reset` (seconds), else `Retry-After` (seconds or an HTTP date).
fn rate_limit_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let seconds = |name: &str| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    };
    seconds(RATE_LIMIT_RESET)
        .or_else(|| seconds(http::header::RETRY_AFTER.as_str()))
        .or_else(|| {
            let date = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
            let at = time::OffsetDateTime::parse(
                date.trim(),
                &time::format_description::well_known::Rfc2822,
            )
            .ok()?;
            Some(SystemTime::from(at).duration_since(now).unwrap_or_default())
        })
}

/// Contentful's error body: `{"sys":{"type":"Error","id":"AccessDenied"},"message":"..."}`.
fn reason_of(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Sys {
        id: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        sys: Option<Sys>,
        message: Option<String>,
    }
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let id = parsed
        .as_ref()
        .and_then(|b| b.sys.as_ref()?.id.clone())
        .unwrap_or_default();
    let message = parsed.and_then(|b| b.message).unwrap_or_default();
    let reason = match (id.is_empty(), message.is_empty()) {
        (false, false) => format!("{id}: {message}"),
        (false, true) => id,
        (true, false) => message,
        (true, true) => status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned(),
    };
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

/// Checks that `id` is a Contentful id (space, environment, app definition, key): 1 to
/// [`MAX_ID_LEN`] letters, digits, `-`, `_` or `.`, and not `.` or `..`. `what` names it in the
/// error.
///
/// # Errors
/// [`ConfigErrorKind::InvalidSetting`] when it is not.
pub fn validate_id(what: &str, id: &str) -> Result<(), ConfigError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(
            ConfigErrorKind::InvalidSetting,
            format!(
                "the {what} is not a Contentful id (1 to {MAX_ID_LEN} letters, digits, `-`, `_` or `.`)"
            ),
        ))
    }
}

/// Checks that `host` is a base URL tokens may be exchanged at (see
/// [`TokenRequest::new`]); returns it trimmed, without a trailing `/`.
///
/// # Errors
/// [`ConfigErrorKind::InvalidSetting`] when it is not.
pub fn validate_host(host: &str) -> Result<&str, ConfigError> {
    crate::ip::secure_base_url(host).ok_or_else(|| {
        ConfigError::new(
            ConfigErrorKind::InvalidSetting,
            format!(
                "the host is a base URL such as {DEFAULT_HOST} or {EU_HOST} (https; plain http only to this machine), not {:?}",
                host.trim()
            ),
        )
    })
}
