//! The app's own session for signed UI locations, built from a verified app-token.
//!
//! Contentstack's docs: verify the `app-token` on the first page load, "do not use the JWT
//! app-token as session for further API calls", "use the payload to build your own user
//! session", and answer only with data of the current organization and stack. [`Sessions`]
//! mints that session from the token's claims and verifies it on later calls.
//!
//! The session token is an HS256 JWT signed with the app's own key. HS256 because only this
//! backend ever signs or verifies it: a shared secret is all that needs, it is the fastest
//! JWT algorithm, and rotation is a list of keys (the first signs; each token names its key
//! with `kid`, so verifying takes one HMAC). An asymmetric algorithm (EdDSA) would only pay
//! off if another party had to verify sessions without being able to mint them.
//!
//! A raw Contentstack app-token is never accepted as a session: it is RS256, has no `kid` of
//! ours and no `aud` of ours.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use countersign_core::contentstack::AppTokenClaims;
//! use countersign_core::session::{SessionKey, Sessions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sessions = Sessions::new([SessionKey::new(b"a session secret of at least 32 bytes!")?])
//!     .with_ttl(Duration::from_secs(3600));
//! # let claims: AppTokenClaims = serde_json::from_value(serde_json::json!({
//! #     "app_uid": "a", "installation_uid": "i", "organization_uid": "o", "user_uid": "u",
//! #     "stack_api_key": "blt1", "exp": 4102444800u64 }))?;
//! let now = SystemTime::now();
//! let (token, session) = sessions.mint(&claims, now)?;
//! assert_eq!(sessions.verify(&token, now)?.tenant_key(), session.tenant_key());
//! # Ok(())
//! # }
//! ```

mod transport;

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::contentstack::AppTokenClaims;
use crate::crypto::{ensure_jwt_provider, fill_random, sha256};
use crate::error::{ConfigError, ConfigErrorKind};

pub use transport::{
    COOKIE_NAME, CSRF_HEADER, OpenError, Opened, TOKEN_PAGE_HEADERS, Transport, carries_app_token,
};

/// The `aud` of every session token: nothing else is ever accepted as one.
pub const AUDIENCE: &str = "countersign-session";
/// How long a session lasts by default: one hour.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// The longest a session may last: twelve hours, a working day. A leaked session (or the
/// app-token URL it was opened from) is good for no longer.
pub const MAX_TTL: Duration = Duration::from_secs(12 * 3600);
/// The shortest session key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// One key the app signs sessions with. `Debug` never shows it.
#[derive(Clone)]
pub struct SessionKey {
    id: String,
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
}

impl SessionKey {
    /// A key from secret bytes (at least [`MIN_KEY_LEN`]).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSecret`] when it is shorter.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_KEY_LEN {
            return Err(ConfigError::new(
                ConfigErrorKind::InvalidSecret,
                format!(
                    "a session key has at least {MIN_KEY_LEN} bytes; this one has {}",
                    secret.len()
                ),
            ));
        }
        Ok(Self {
            // The key id names the key without revealing it.
            id: hex::encode(&sha256(secret)[..6]),
            encoding: jsonwebtoken::EncodingKey::from_secret(secret),
            decoding: jsonwebtoken::DecodingKey::from_secret(secret),
        })
    }

    /// A new random 32-byte key, from the operating system's cryptographic random source, and
    /// its bytes (to store).
    ///
    /// # Errors
    /// [`ConfigErrorKind::RandomSource`] when the random source fails.
    pub fn generate() -> Result<(Self, [u8; 32]), ConfigError> {
        let mut secret = [0u8; 32];
        fill_random(&mut secret).map_err(|e| {
            ConfigError::new(
                ConfigErrorKind::RandomSource,
                format!("the random source failed: {e}"),
            )
        })?;
        Ok((Self::new(secret)?, secret))
    }

    /// The key's id, the `kid` of the tokens it signs.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The claims of a session token. `Debug` shows neither the session id nor the CSRF token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    aud: String,
    sid: String,
    csrf: String,
    app_uid: String,
    installation_uid: String,
    organization_uid: String,
    user_uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stack_api_key: Option<String>,
    iat: u64,
    exp: u64,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("sid", &"<redacted>")
            .field("csrf", &"<redacted>")
            .field("app_uid", &self.app_uid)
            .field("installation_uid", &self.installation_uid)
            .field("organization_uid", &self.organization_uid)
            .field("user_uid", &self.user_uid)
            .field("stack_api_key", &self.stack_api_key)
            .field("iat", &self.iat)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

/// Mints and verifies the app's sessions. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Sessions {
    keys: Vec<SessionKey>,
    ttl: Duration,
    app_uid: Option<String>,
}

impl Sessions {
    /// Sessions signed with the first of `keys` and verified with any of them (rotation: put
    /// the new key first, keep the old one until its sessions have expired).
    ///
    /// # Panics
    /// Never; an empty list is refused by [`try_new`](Self::try_new).
    #[must_use]
    pub fn new(keys: impl IntoIterator<Item = SessionKey>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
            ttl: DEFAULT_TTL,
            app_uid: None,
        }
    }

    /// As [`new`](Self::new), refusing an empty list.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSecret`] when `keys` is empty.
    pub fn try_new(keys: impl IntoIterator<Item = SessionKey>) -> Result<Self, ConfigError> {
        let sessions = Self::new(keys);
        if sessions.keys.is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::InvalidSecret,
                "sessions need at least one key",
            ));
        }
        Ok(sessions)
    }

    /// How long a session lasts (default one hour, at most [`MAX_TTL`]: a longer one is taken
    /// as that).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.min(MAX_TTL);
        self
    }

    /// Binds the sessions to this app: a session is minted only from an app-token of
    /// `app_uid`, and only sessions of `app_uid` verify, even where several apps share a
    /// session key.
    #[must_use]
    pub fn with_app_uid(mut self, app_uid: impl Into<String>) -> Self {
        self.app_uid = Some(app_uid.into());
        self
    }

    /// The app uid the sessions are bound to, if any.
    #[must_use]
    pub fn app_uid(&self) -> Option<&str> {
        self.app_uid.as_deref()
    }

    fn check_app(&self, app_uid: &str) -> Result<(), SessionError> {
        match self.app_uid.as_deref() {
            Some(ours) if ours != app_uid => Err(SessionError::new(
                SessionErrorKind::AppMismatch,
                "the session or app-token belongs to another app",
            )),
            _ => Ok(()),
        }
    }

    /// Mints a session from a verified app-token's claims, at `now`.
    ///
    /// # Errors
    /// [`SessionErrorKind::AppMismatch`] for a token of another app when the sessions are
    /// bound to one; [`SessionErrorKind::NoKey`] without keys; the random source failing.
    pub fn mint(
        &self,
        app_token: &AppTokenClaims,
        now: SystemTime,
    ) -> Result<(String, Session), SessionError> {
        self.check_app(&app_token.app_uid)?;
        let key = self.keys.first().ok_or_else(|| {
            SessionError::new(SessionErrorKind::NoKey, "no session key is configured")
        })?;
        let iat = unix_secs(now);
        let claims = Claims {
            aud: AUDIENCE.to_owned(),
            sid: random_id()?,
            csrf: random_id()?,
            app_uid: app_token.app_uid.clone(),
            installation_uid: app_token.installation_uid.clone(),
            organization_uid: app_token.organization_uid.clone(),
            user_uid: app_token.user_uid.clone(),
            stack_api_key: app_token.stack_api_key.clone(),
            iat,
            exp: iat.saturating_add(self.ttl.as_secs()),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(key.id.clone());
        ensure_jwt_provider();
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| {
            SessionError::new(
                SessionErrorKind::NoKey,
                format!("cannot sign the session: {e}"),
            )
        })?;
        Ok((token, Session::from(claims)))
    }

    /// Verifies a session token at `now`.
    ///
    /// # Errors
    /// A [`SessionError`]: malformed, unknown key (including a raw app-token), tampered,
    /// expired.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Session, SessionError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            SessionError::new(SessionErrorKind::Malformed, "the session is not a JWT")
        })?;
        if header.alg != jsonwebtoken::Algorithm::HS256 {
            return Err(SessionError::new(
                SessionErrorKind::UnknownKey,
                "the token is not one of this app's sessions (a Contentstack app-token is not a session)",
            ));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.iter().find(|key| key.id == kid))
            .ok_or_else(|| {
                SessionError::new(
                    SessionErrorKind::UnknownKey,
                    "the session is signed with an unknown key",
                )
            })?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        ensure_jwt_provider();
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => SessionError::new(
                    SessionErrorKind::Tampered,
                    "the session's signature does not match",
                ),
                jsonwebtoken::errors::ErrorKind::InvalidAudience => SessionError::new(
                    SessionErrorKind::UnknownKey,
                    "the token is not one of this app's sessions",
                ),
                _ => SessionError::new(
                    SessionErrorKind::Malformed,
                    "the session's claims are not as minted",
                ),
            })?
            .claims;
        if unix_secs(now) >= claims.exp {
            return Err(SessionError::new(
                SessionErrorKind::Expired,
                "the session has expired",
            ));
        }
        self.check_app(&claims.app_uid)?;
        Ok(Session::from(claims))
    }
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_id() -> Result<String, SessionError> {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes).map_err(|e| {
        SessionError::new(
            SessionErrorKind::NoKey,
            format!("the random source failed: {e}"),
        )
    })?;
    Ok(hex::encode(bytes))
}

/// A verified session: who, in which organization and stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    claims: Claims,
}

impl From<Claims> for Session {
    fn from(claims: Claims) -> Self {
        Self { claims }
    }
}

impl Session {
    /// The organization.
    #[must_use]
    pub fn organization_uid(&self) -> &str {
        &self.claims.organization_uid
    }

    /// The stack; `None` for organization apps.
    #[must_use]
    pub fn stack_api_key(&self) -> Option<&str> {
        self.claims.stack_api_key.as_deref()
    }

    /// The app's installation.
    #[must_use]
    pub fn installation_uid(&self) -> &str {
        &self.claims.installation_uid
    }

    /// The user.
    #[must_use]
    pub fn user_uid(&self) -> &str {
        &self.claims.user_uid
    }

    /// The app.
    #[must_use]
    pub fn app_uid(&self) -> &str {
        &self.claims.app_uid
    }

    /// This session's random id.
    #[must_use]
    pub fn session_id(&self) -> &str {
        &self.claims.sid
    }

    /// The token a page sends in `X-CSRF-Token` on state-changing calls in cookie mode.
    #[must_use]
    pub fn csrf_token(&self) -> &str {
        &self.claims.csrf
    }

    /// When the session expires.
    #[must_use]
    pub fn expires_at(&self) -> SystemTime {
        crate::freshness::unix_seconds(self.claims.exp)
    }

    /// The tenant every read and write of this session must be scoped to.
    #[must_use]
    pub fn tenant_key(&self) -> TenantKey {
        TenantKey {
            organization_uid: self.claims.organization_uid.clone(),
            app_uid: self.claims.app_uid.clone(),
            installation_uid: self.claims.installation_uid.clone(),
            stack_api_key: self.claims.stack_api_key.clone(),
        }
    }

    /// Whether this session belongs to `stack_api_key`'s stack.
    #[must_use]
    pub fn is_stack(&self, stack_api_key: &str) -> bool {
        self.claims.stack_api_key.as_deref() == Some(stack_api_key)
    }
}

/// Whose data a session may touch: its organization, app, installation and stack. `Display`
/// gives a stable string to prefix storage keys with:
/// `org:<uid>/app:<uid>/inst:<uid>/stack:<api key>` (or `.../stack:-` for organization apps).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantKey {
    /// The organization.
    pub organization_uid: String,
    /// The app.
    pub app_uid: String,
    /// The installation.
    pub installation_uid: String,
    /// The stack, for stack apps.
    pub stack_api_key: Option<String>,
}

impl fmt::Display for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "org:{}/app:{}/inst:{}/stack:{}",
            self.organization_uid,
            self.app_uid,
            self.installation_uid,
            self.stack_api_key.as_deref().unwrap_or("-")
        )
    }
}

/// Why a session was refused.
pub type SessionError = crate::error::Rejected<SessionErrorKind>;

crate::reason_kind! {
    /// Why a session was refused.
    pub enum SessionErrorKind {
        /// No session was presented.
        Missing => SESSION_MISSING,
        /// Not a JWT, or not the claims a session has.
        Malformed => SESSION_MALFORMED,
        /// Signed with a key this app does not have, or not a session at all (an app-token).
        UnknownKey => SESSION_UNKNOWN_KEY,
        /// The signature does not match: the token was changed.
        Tampered => SESSION_TAMPERED,
        /// The session has expired.
        Expired => SESSION_EXPIRED,
        /// A state-changing call authenticated by cookie lacks the right `X-CSRF-Token`.
        CsrfMismatch => CSRF_TOKEN_MISMATCH,
        /// Sessions cannot be minted: no key.
        NoKey => SESSION_KEY_MISSING,
        /// The session, or the app-token it would be minted from, belongs to another app.
        AppMismatch => SESSION_APP_MISMATCH,
    }
}

#[cfg(test)]
mod tests;
