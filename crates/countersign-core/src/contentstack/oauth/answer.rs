//! The token endpoint's answer: a token set, or why not.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::StatusCode;

/// An OAuth access token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

/// An OAuth refresh token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

macro_rules! secret_text {
    ($name:ident, $what:literal) => {
        impl $name {
            #[doc = concat!("A ", $what, " read from storage.")]
            #[must_use]
            pub fn new(text: impl Into<String>) -> Self {
                Self(text.into())
            }

            #[doc = concat!("The ", $what, " itself. Keep it out of logs.")]
            #[must_use]
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret_text!(AccessToken, "access token");
secret_text!(RefreshToken, "refresh token");

impl AccessToken {
    /// `Bearer <token>` as a header value, marked sensitive.
    ///
    /// # Errors
    /// When the token has bytes a header cannot hold.
    pub fn authorization(&self) -> Result<http::HeaderValue, http::header::InvalidHeaderValue> {
        let mut value = http::HeaderValue::try_from(format!("Bearer {}", self.0))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// Whom a token acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthorizationType {
    /// The installation: authorized when an organization admin installed the app.
    App,
    /// The user who authorized it.
    User,
}

/// What a token endpoint issued. `Debug` shows everything but the tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSet {
    /// The access token (`Authorization: Bearer`).
    pub access_token: AccessToken,
    /// The refresh token, when the answer has one (a refresh may keep the old one).
    pub refresh_token: Option<RefreshToken>,
    /// When the access token expires: the time read plus `expires_in`.
    pub expires_at: SystemTime,
    /// The installation's region, as the answer names it (`NA`, `EU`, ...), if it does.
    pub location: Option<String>,
    /// The organization the token is for, when the answer names it.
    pub organization_uid: Option<String>,
    /// Whom the token acts as, when the answer says.
    pub authorization_type: Option<AuthorizationType>,
    /// The stack, for a stack app's token.
    pub stack_api_key: Option<String>,
    /// The user, for a user token.
    pub user_uid: Option<String>,
}

/// What a token endpoint's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `200` with a token set.
    Issued(TokenSet),
    /// `400 invalid_grant`: the code was used or expired, or the refresh token is dead. Do not
    /// try again with it; a dead refresh token means the installation must authorize again.
    InvalidGrant(Refusal),
    /// `429`, or a `5xx`: the host could not answer now; try again after a backoff.
    Unavailable(StatusCode),
    /// Any other refusal (a wrong client secret, a redirect URI that does not match), or a
    /// `200` that is not a token set: do not try again with the same inputs.
    Refused(Refusal),
}

/// Why the host refused: its status and the reason it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The answer's status.
    pub status: StatusCode,
    /// OAuth's `error` (`invalid_grant`, `invalid_client`, ...), when the answer has one.
    pub error: Option<String>,
    /// OAuth's `error_description`, or what was wrong with a `200`: at most 300 characters of
    /// printable text.
    pub description: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            Some(error) => write!(f, "{} {error}: {}", self.status, self.description),
            None => write!(f, "{}: {}", self.status, self.description),
        }
    }
}

/// Reads a token endpoint's answer, at `now`.
#[must_use]
pub fn read_answer(status: StatusCode, body: &[u8], now: SystemTime) -> Answer {
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Answer::Unavailable(status);
    }
    if status.is_success() {
        return match token_set(body, now) {
            Ok(tokens) => Answer::Issued(tokens),
            Err(what) => Answer::Refused(Refusal {
                status,
                error: None,
                description: what.to_owned(),
            }),
        };
    }
    let refusal = refusal(status, body);
    if status == StatusCode::BAD_REQUEST && refusal.error.as_deref() == Some("invalid_grant") {
        Answer::InvalidGrant(refusal)
    } else {
        Answer::Refused(refusal)
    }
}

fn token_set(body: &[u8], now: SystemTime) -> Result<TokenSet, &'static str> {
    #[derive(serde::Deserialize)]
    struct Issued {
        access_token: String,
        refresh_token: Option<String>,
        token_type: Option<String>,
        expires_in: u64,
        location: Option<String>,
        organization_uid: Option<String>,
        authorization_type: Option<String>,
        stack_api_key: Option<String>,
        user_uid: Option<String>,
    }
    let issued: Issued = serde_json::from_slice(body)
        .map_err(|_| "the answer is not a token set (access_token, expires_in)")?;
    if issued.access_token.is_empty() {
        return Err("the answer's access_token is empty");
    }
    if issued
        .token_type
        .as_deref()
        .is_some_and(|kind| !kind.eq_ignore_ascii_case("bearer"))
    {
        return Err("the answer's token_type is not Bearer");
    }
    let authorization_type = match issued.authorization_type.as_deref() {
        Some("app") => Some(AuthorizationType::App),
        Some("user") => Some(AuthorizationType::User),
        None => None,
        Some(_) => return Err("the answer's authorization_type is neither app nor user"),
    };
    let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
    Ok(TokenSet {
        access_token: AccessToken(issued.access_token),
        refresh_token: non_empty(issued.refresh_token).map(RefreshToken),
        expires_at: now
            .checked_add(Duration::from_secs(
                issued
                    .expires_in
                    .min(crate::freshness::MAX_WINDOW.as_secs()),
            ))
            .unwrap_or(now),
        location: non_empty(issued.location),
        organization_uid: non_empty(issued.organization_uid),
        authorization_type,
        stack_api_key: non_empty(issued.stack_api_key),
        user_uid: non_empty(issued.user_uid),
    })
}

/// OAuth's error body: `{"error": "invalid_grant", "error_description": "..."}`.
fn refusal(status: StatusCode, body: &[u8]) -> Refusal {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: Option<String>,
        error_description: Option<String>,
    }
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    fn printable(text: &str) -> String {
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(300)
            .collect()
    }
    let error = parsed
        .as_ref()
        .and_then(|body| body.error.as_deref())
        .map(printable);
    let description = parsed
        .as_ref()
        .and_then(|body| body.error_description.as_deref())
        .map_or_else(
            || {
                status
                    .canonical_reason()
                    .unwrap_or("no reason given")
                    .to_owned()
            },
            printable,
        );
    Refusal {
        status,
        error,
        description,
    }
}
