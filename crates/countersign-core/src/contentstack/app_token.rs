//! The `app-token` of signed UI locations: a JWT Contentstack signs with its webhook key.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{KeySet, SigningKey};
use crate::crypto::ensure_jwt_provider;
use crate::error::{ConfigError, ConfigErrorKind};

/// The query parameter that carries the token on a signed UI location's first load.
pub const QUERY_PARAMETER: &str = "app-token";

/// How much clock difference `exp` and `nbf` tolerate by default: 60 seconds.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// How long an app-token lives: Contentstack says "a few minutes"; what tools that mint
/// stand-in tokens ([`mint`]) use by default.
pub const LIFETIME: Duration = Duration::from_secs(300);

/// A JWT signature algorithm that an RSA key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppTokenAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256: what Contentstack uses, and the only one accepted by
    /// default.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
}

impl AppTokenAlgorithm {
    fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::Rs384 => jsonwebtoken::Algorithm::RS384,
            Self::Rs512 => jsonwebtoken::Algorithm::RS512,
            Self::Ps256 => jsonwebtoken::Algorithm::PS256,
            Self::Ps384 => jsonwebtoken::Algorithm::PS384,
            Self::Ps512 => jsonwebtoken::Algorithm::PS512,
        }
    }

    /// The name in a JWT header: `RS256`, ...
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
        }
    }
}

/// The claims of a verified app-token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppTokenClaims {
    /// The app.
    pub app_uid: String,
    /// The app's installation.
    pub installation_uid: String,
    /// The organization.
    pub organization_uid: String,
    /// The user who opened the location.
    pub user_uid: String,
    /// The stack; `None` for organization apps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_api_key: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before, Unix seconds, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Every other claim, kept as sent.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Why an app-token was rejected.
pub type AppTokenError = crate::error::Rejected<AppTokenErrorKind>;

crate::reason_kind! {
    /// Why an app-token was rejected.
    pub enum AppTokenErrorKind {
        /// The page load carries no `app-token`.
        Missing => APP_TOKEN_MISSING,
        /// Not a JWT, or its claims are missing or of the wrong type.
        Malformed => APP_TOKEN_MALFORMED,
        /// The signature matches none of the keys.
        BadSignature => APP_TOKEN_SIGNATURE_MISMATCH,
        /// The header names an algorithm that is not accepted (`none`, `HS256`, ...).
        WrongAlgorithm => APP_TOKEN_ALGORITHM_NOT_ALLOWED,
        /// `exp` has passed (beyond the leeway).
        Expired => APP_TOKEN_EXPIRED,
        /// `nbf` is still ahead (beyond the leeway).
        NotYetValid => APP_TOKEN_NOT_YET_VALID,
        /// No verification key is available yet.
        KeyUnavailable => KEY_UNAVAILABLE,
        /// An authentic token of another app: its `app_uid` is not the one required.
        AppMismatch => APP_TOKEN_APP_MISMATCH,
        /// The token has opened a session already, and tokens are single use
        /// ([`Sessions::open_once`](crate::session::Sessions::open_once)).
        Reused => APP_TOKEN_REUSED,
    }
}

impl From<super::KeyUnavailable> for AppTokenError {
    fn from(unavailable: super::KeyUnavailable) -> Self {
        Self::new(AppTokenErrorKind::KeyUnavailable, unavailable.to_string())
    }
}

/// Verifies app-tokens: the signature with the same keys as webhooks, the algorithm pinned
/// (the token's header never picks it), `exp` required, `nbf` honoured, a small leeway. No
/// `iss` or `aud` is required: Contentstack documents none.
///
/// Verify the token on the page load that carries it, then build the app's own session from
/// its claims: the token itself must never serve as a session.
///
/// Contentstack signs the app-tokens of every app with one key per region, so a valid token
/// proves only that Contentstack issued it, to some app. Require yours with
/// [`with_app_uid`](Self::with_app_uid).
#[derive(Debug, Clone)]
pub struct AppTokenVerifier {
    algorithms: Vec<AppTokenAlgorithm>,
    leeway: Duration,
    app_uid: Option<String>,
}

impl Default for AppTokenVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl AppTokenVerifier {
    /// RS256 only, with a leeway of [`DEFAULT_LEEWAY`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            algorithms: vec![AppTokenAlgorithm::Rs256],
            leeway: DEFAULT_LEEWAY,
            app_uid: None,
        }
    }

    /// Accepts only tokens whose `app_uid` is `app_uid`, this app's: a token Contentstack
    /// issued to another app is refused ([`AppTokenErrorKind::AppMismatch`]).
    #[must_use]
    pub fn with_app_uid(mut self, app_uid: impl Into<String>) -> Self {
        self.app_uid = Some(app_uid.into());
        self
    }

    /// The app uid required, if any.
    #[must_use]
    pub fn app_uid(&self) -> Option<&str> {
        self.app_uid.as_deref()
    }

    /// Accepts these algorithms instead of RS256 alone.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSetting`] when `algorithms` is empty.
    pub fn with_algorithms(
        mut self,
        algorithms: impl IntoIterator<Item = AppTokenAlgorithm>,
    ) -> Result<Self, ConfigError> {
        self.algorithms = algorithms.into_iter().collect();
        if self.algorithms.is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::InvalidSetting,
                "accept at least one app-token algorithm",
            ));
        }
        Ok(self)
    }

    /// How much clock difference `exp` and `nbf` tolerate.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(crate::freshness::MAX_WINDOW);
        self
    }

    /// How far past `exp` (and before `nbf`) a token is still accepted.
    #[must_use]
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Verifies `token` against `keys` at `now`.
    ///
    /// # Errors
    /// An [`AppTokenError`] whose [`kind`](AppTokenError::kind) says why.
    pub fn verify(
        &self,
        token: &str,
        keys: &KeySet,
        now: SystemTime,
    ) -> Result<AppTokenClaims, AppTokenError> {
        let algorithm = self.header_algorithm(token)?;
        ensure_jwt_provider();
        let mut validation = jsonwebtoken::Validation::new(algorithm.to_jwt());
        // Time is checked below against the injected clock; jsonwebtoken reads the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();

        let mut last_error = None;
        for key in keys.iter() {
            match jsonwebtoken::decode::<serde_json::Value>(token, key.jwt_key(), &validation) {
                Ok(data) => return self.check_claims(data.claims, now),
                Err(e) => {
                    let error = classify(&e);
                    if error.kind() != AppTokenErrorKind::BadSignature {
                        return Err(error);
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            AppTokenError::new(AppTokenErrorKind::KeyUnavailable, "the key set is empty")
        }))
    }

    /// The header's `alg`, read before anything else so that a token cannot pick it.
    fn header_algorithm(&self, token: &str) -> Result<AppTokenAlgorithm, AppTokenError> {
        let malformed =
            |why: &str| AppTokenError::new(AppTokenErrorKind::Malformed, why.to_owned());
        let header = token
            .split('.')
            .next()
            .ok_or_else(|| malformed("not a JWT"))?;
        if token.split('.').count() != 3 {
            return Err(malformed("not a JWT: a JWT has three dot-separated parts"));
        }
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| malformed("the JWT header is not base64url"))?;
        let header: serde_json::Value =
            serde_json::from_slice(&header).map_err(|_| malformed("the JWT header is not JSON"))?;
        let alg = header
            .get("alg")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| malformed("the JWT header has no alg"))?;
        self.algorithms
            .iter()
            .copied()
            .find(|a| a.name() == alg)
            .ok_or_else(|| {
                let allowed: Vec<&str> = self.algorithms.iter().map(|a| a.name()).collect();
                AppTokenError::new(
                    AppTokenErrorKind::WrongAlgorithm,
                    format!(
                        "the token is signed with {alg:?}; accepted: {}",
                        allowed.join(", ")
                    ),
                )
            })
    }

    fn check_claims(
        &self,
        claims: serde_json::Value,
        now: SystemTime,
    ) -> Result<AppTokenClaims, AppTokenError> {
        let missing = [
            "app_uid",
            "installation_uid",
            "organization_uid",
            "user_uid",
            "exp",
        ]
        .into_iter()
        .filter(|name| claims.get(name).is_none())
        .collect::<Vec<_>>();
        if !missing.is_empty() {
            return Err(AppTokenError::new(
                AppTokenErrorKind::Malformed,
                format!("the token lacks the claim(s) {}", missing.join(", ")),
            ));
        }
        let claims: AppTokenClaims = serde_json::from_value(claims).map_err(|e| {
            AppTokenError::new(
                AppTokenErrorKind::Malformed,
                format!("the token's claims are of the wrong type: {e}"),
            )
        })?;
        if let Some(ours) = self.app_uid.as_deref()
            && claims.app_uid != ours
        {
            return Err(AppTokenError::new(
                AppTokenErrorKind::AppMismatch,
                "the token was issued to another app (app_uid)",
            ));
        }
        let now_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let leeway = self.leeway.as_secs();
        if now_secs >= claims.exp.saturating_add(leeway) {
            return Err(AppTokenError::new(
                AppTokenErrorKind::Expired,
                format!(
                    "the token expired {} s ago",
                    now_secs.saturating_sub(claims.exp)
                ),
            ));
        }
        if let Some(nbf) = claims.nbf
            && now_secs.saturating_add(leeway) < nbf
        {
            return Err(AppTokenError::new(
                AppTokenErrorKind::NotYetValid,
                format!("the token is valid only in {} s", nbf - now_secs),
            ));
        }
        Ok(claims)
    }
}

fn classify(error: &jsonwebtoken::errors::Error) -> AppTokenError {
    use jsonwebtoken::errors::ErrorKind as Jwt;
    match error.kind() {
        Jwt::InvalidSignature => AppTokenError::new(
            AppTokenErrorKind::BadSignature,
            "the token's signature matches none of the keys",
        ),
        Jwt::InvalidAlgorithm | Jwt::InvalidAlgorithmName => AppTokenError::new(
            AppTokenErrorKind::WrongAlgorithm,
            "the token's algorithm is not accepted",
        ),
        _ => AppTokenError::new(
            AppTokenErrorKind::Malformed,
            "the token is not a well-formed JWT",
        ),
    }
}

/// Mints an app-token as Contentstack does (RS256), for tests and local development.
///
/// `claims` are the token's claims; `exp` and `iat` are set from `now` and `expires_in` unless
/// present.
///
/// # Errors
/// When `claims` is not a JSON object or the key cannot sign.
pub fn mint(
    key: &SigningKey,
    claims: &serde_json::Value,
    now: SystemTime,
    expires_in: Duration,
) -> Result<String, ConfigError> {
    let mut claims = claims.as_object().cloned().ok_or_else(|| {
        ConfigError::new(
            ConfigErrorKind::InvalidSetting,
            "app-token claims must be a JSON object",
        )
    })?;
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    claims.entry("iat").or_insert_with(|| now_secs.into());
    claims
        .entry("exp")
        .or_insert_with(|| now_secs.saturating_add(expires_in.as_secs()).into());
    ensure_jwt_provider();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key.jwt_key(),
    )
    .map_err(|e| {
        ConfigError::new(
            ConfigErrorKind::InvalidKey,
            format!("cannot sign the app-token: {e}"),
        )
    })
}
