//! Calling Contentstack as the app: OAuth through Developer Hub, as `@contentstack/management`'s
//! `OAuthHandler` does it (the wire format is in the spec's section 9).
//!
//! An app gets two kinds of token: an **app token**, authorized when an organization admin
//! installs the app ([`Authorization::install_url`]; it acts as the installation), and a **user
//! token**, authorized by a user ([`Authorization::authorize_url`]). Both come back to the
//! redirect URI as `?code=..&location=..`: exchange the code within 60 seconds, **at the region
//! the `location` names** ([`Region::for_location`]), with [`Client::exchange_form`]; refresh
//! with [`Client::refresh_form`]. [`read_answer`] reads what the token endpoint answers.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use countersign_core::contentstack::Region;
//! use countersign_core::contentstack::oauth::{Authorization, Client, ClientSecret, CodeVerifier};
//!
//! // A public client (no secret) proves the exchange with PKCE.
//! let verifier = CodeVerifier::generate()?; // kept until the callback
//! let url = Authorization::new("app-uid", "client-id", "https://my.app/oauth/callback")
//!     .with_scopes(["cm.entries.management:read"])
//!     .with_state("a-random-state")
//!     .with_pkce(&verifier)
//!     .authorize_url(&Region::Eu);
//! assert!(url.starts_with("https://eu-app.contentstack.com/apps/app-uid/authorize?response_type=code&client_id=client-id"));
//!
//! // The callback: ?code=..&location=AZURE_NA
//! let region = Region::Eu.for_location("AZURE_NA")?;
//! let client = Client::new("client-id", "https://my.app/oauth/callback");
//! let form = client.exchange_form("the-code", Some(&verifier))?;
//! assert_eq!(region.token_url(), "https://azure-na-developerhub-api.contentstack.com/token");
//! assert!(form.starts_with("grant_type=authorization_code&code=the-code&redirect_uri="));
//!
//! // A confidential client (a backend) sends its secret instead.
//! let backend = Client::new("client-id", "https://my.app/oauth/callback")
//!     .with_secret(ClientSecret::new("the-secret")?);
//! assert!(backend.exchange_form("the-code", None)?.ends_with("&client_secret=the-secret"));
//! # Ok(())
//! # }
//! ```

mod answer;
mod pkce;

use std::fmt;

pub use answer::{
    AccessToken, Answer, AuthorizationType, RefreshToken, Refusal, TokenSet, read_answer,
};
pub use pkce::CodeVerifier;

use super::Region;
use crate::error::{ConfigError, ConfigErrorKind};

/// The content type of the token endpoint's requests (the forms of [`Client`]).
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// What an authorization URL asks for: the app, its OAuth client, where the code comes back,
/// and, for a user token, the scopes, a state and a PKCE challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    app_uid: String,
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    state: Option<String>,
    code_challenge: Option<String>,
}

impl Authorization {
    /// An authorization of `app_uid`'s OAuth client `client_id`, answered at `redirect_uri`.
    #[must_use]
    pub fn new(
        app_uid: impl Into<String>,
        client_id: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            app_uid: app_uid.into(),
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            scopes: Vec::new(),
            state: None,
            code_challenge: None,
        }
    }

    /// The scopes asked for (`cm.entries.management:read`, ...), sent space-separated.
    #[must_use]
    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// A state the redirect brings back unchanged: check it in the callback against the one
    /// you kept for this browser, so that nobody can make your app exchange their code.
    #[must_use]
    pub fn with_state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }

    /// Sends `verifier`'s challenge (`S256`): a public client then exchanges the code with the
    /// verifier instead of a secret.
    #[must_use]
    pub fn with_pkce(mut self, verifier: &CodeVerifier) -> Self {
        self.code_challenge = Some(verifier.challenge());
        self
    }

    /// Where an organization admin installs the app, which authorizes its app token:
    /// `{app host}/apps/{app_uid}/install`, with the state when one is set.
    #[must_use]
    pub fn install_url(&self, region: &Region) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(state) = &self.state {
            query.append_pair("state", state);
        }
        self.url(region, "install", &query.finish())
    }

    /// Where a user authorizes a user token:
    /// `{app host}/apps/{app_uid}/authorize?response_type=code&client_id=..&redirect_uri=..`,
    /// then `scope`, `state`, `code_challenge` and `code_challenge_method=S256` when set.
    #[must_use]
    pub fn authorize_url(&self, region: &Region) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri);
        if !self.scopes.is_empty() {
            query.append_pair("scope", &self.scopes.join(" "));
        }
        if let Some(state) = &self.state {
            query.append_pair("state", state);
        }
        if let Some(challenge) = &self.code_challenge {
            query
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
        }
        self.url(region, "authorize", &query.finish())
    }

    /// `{app host}/apps/{app_uid}/{action}`, the app uid percent-encoded, and `?query` unless
    /// it is empty.
    fn url(&self, region: &Region, action: &str, query: &str) -> String {
        let app_uid = percent_encoding::utf8_percent_encode(&self.app_uid, PATH_SEGMENT);
        let base = region.app_base_url();
        let mut url = format!("{}/apps/{app_uid}/{action}", base.trim_end_matches('/'));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }
}

/// What a path segment keeps as it is: RFC 3986's unreserved characters.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An OAuth client's secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// The secret Developer Hub gave the app's OAuth client.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSecret`] when it is empty.
    pub fn new(secret: impl Into<String>) -> Result<Self, ConfigError> {
        let secret = secret.into();
        if secret.trim().is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::InvalidSecret,
                "an OAuth client secret is not empty",
            ));
        }
        Ok(Self(secret))
    }

    /// The secret itself. Keep it out of logs.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// The app's OAuth client, as the token endpoint knows it: its id, its redirect URI and, for a
/// confidential client, its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    client_id: String,
    redirect_uri: String,
    secret: Option<ClientSecret>,
}

impl Client {
    /// A public client: it proves a code exchange with a PKCE verifier.
    #[must_use]
    pub fn new(client_id: impl Into<String>, redirect_uri: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            secret: None,
        }
    }

    /// A confidential client: it sends `secret` with every exchange and refresh.
    #[must_use]
    pub fn with_secret(mut self, secret: ClientSecret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// The client id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The form (`application/x-www-form-urlencoded`) that exchanges `code`, in the SDK's
    /// order: `grant_type=authorization_code`, `code`, `redirect_uri`, `client_id`, then
    /// `client_secret` or, for a public client, `code_verifier`.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSetting`] for a public client without a verifier.
    pub fn exchange_form(
        &self,
        code: &str,
        verifier: Option<&CodeVerifier>,
    ) -> Result<String, ConfigError> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("client_id", &self.client_id);
        match (&self.secret, verifier) {
            (Some(secret), _) => form.append_pair("client_secret", secret.expose()),
            (None, Some(verifier)) => form.append_pair("code_verifier", verifier.expose()),
            (None, None) => {
                return Err(ConfigError::new(
                    ConfigErrorKind::InvalidSetting,
                    "a code exchange needs the client secret (a confidential client, such as a backend) or, for a public client, the PKCE verifier its authorization URL was made with",
                ));
            }
        };
        Ok(form.finish())
    }

    /// The form that refreshes with `refresh_token`, in the SDK's order:
    /// `grant_type=refresh_token`, `refresh_token`, `client_id`, `redirect_uri`, then
    /// `client_secret` for a confidential client.
    #[must_use]
    pub fn refresh_form(&self, refresh_token: &RefreshToken) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token.expose())
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri);
        if let Some(secret) = &self.secret {
            form.append_pair("client_secret", secret.expose());
        }
        form.finish()
    }
}

#[cfg(test)]
mod tests;
