//! Contentstack: signed webhooks (RSA and HMAC), keys by region, and the app-token of signed UI
//! locations.
//!
//! # Webhooks
//!
//! Contentstack signs each delivery's body, by one of two methods:
//!
//! - **RSA** (the default, "CS Cert"): `X-Contentstack-Request-Signature: v1=<base64>`, an
//!   RSASSA-PSS / SHA-256 / MGF1-SHA-256 signature over the raw body with the region's key,
//!   published at `https://<app host>/.well-known/public-keys.json`. The salt length is 32 or
//!   the maximum; both are tried, 32 first.
//! - **HMAC** (opt-in): `x-contentstack-hmac-signature: t=<unix seconds>,v1=<hex>`, an
//!   HMAC-SHA256 of `"<t>.<raw body>"` with a shared secret.
//!
//! The signed time is `triggered_at` in the body (RSA) or `t` (HMAC); a delivery older than the
//! tolerance is refused. The default, 30 minutes, is long enough for Contentstack's last
//! automatic retry of a delivery whose `triggered_at` was not refreshed ([`LAST_RETRY_AFTER`]):
//! pair the verifier with a replay guard, which remembers each delivery for that long. [`WebhookVerifier`] does all of this and returns
//! a [`VerifiedWebhook`] with the envelope (`module`, `event`, `api_key`); handlers deserialize
//! `data` into their own types.
//!
//! Where Contentstack's sample code is wrong, this module is not: it splits each signature
//! element on its first `=` only (base64 ends in `=`), parses `triggered_at` as RFC 3339
//! instead of subtracting a string from a number, never trusts the deprecated
//! `X-Contentstack-Signature`, and caps how many signatures one header may make it try.
//!
//! What a delivery is, whatever form it arrives in (re-signed, another salt, another set of
//! `v1` elements), is [`VerifiedWebhook::replay_key`], from the verified body
//! ([`crate::replay`]). A valid signature proves that Contentstack sent a delivery, not that it
//! is for this app: [`Tenancy`] checks that.
//!
//! # Keys
//!
//! [`PublicKey`] and [`KeySet`] parse PKCS#1 PEM, SPKI PEM and `public-keys.json`, once. A
//! [`KeySource`] supplies them per request: [`StaticKeys`] from configuration here, the
//! caching well-known endpoint in the `countersign` crate. [`Region`] knows every region's key
//! URL.
//!
//! # App-tokens
//!
//! A UI location marked `"signed": true` receives a JWT in the `app-token` query parameter on
//! its first load. [`AppTokenVerifier`] verifies it (RS256 pinned, `exp` required) and returns
//! its [`AppTokenClaims`].

mod app_token;
pub mod diagnostic;
mod error;
mod events;
mod hmac;
mod keys;
pub mod oauth;
mod region;
mod source;
mod tenant;
mod webhook;

pub use crate::crypto::{PublicKey, SaltLength, SigningKey};
pub use app_token::{
    AppTokenAlgorithm, AppTokenClaims, AppTokenError, AppTokenErrorKind, AppTokenVerifier,
    DEFAULT_LEEWAY, LIFETIME as APP_TOKEN_LIFETIME, QUERY_PARAMETER as APP_TOKEN_QUERY_PARAMETER,
    mint as mint_app_token,
};
pub use error::{Error, ErrorKind};
pub use events::{Event, Module, Phase};
pub use hmac::HmacSecret;
pub use keys::KeySet;
pub use region::{PUBLIC_KEYS_PATH, Region, is_trusted_key_url};
pub use source::{BoxKeySource, KeySource, KeyUnavailable, NoKeys, StaticKeys, with_fresh_keys};
pub use tenant::{
    AnyStack, BoxStackCheck, StackAllowlist, StackCheck, StackCheckFn, Tenancy, TenantUnavailable,
    stack_check_fn,
};
pub use webhook::{
    ATTEMPT_TIMEOUT, DEFAULT_FUTURE_SKEW, DEFAULT_TOLERANCE, Envelope, HMAC_SIGNATURE_HEADER,
    INSTALLATION_MODULE, LAST_RETRY_AFTER, LEGACY_SIGNATURE_HEADER, MAX_SIGNATURE_ELEMENTS,
    MAX_SIGNATURE_HEADER_LEN, RETRY_SCHEDULE, RSA_SIGNATURE_HEADER, SignatureMethod, VerifiedBy,
    VerifiedWebhook, WebhookBody, WebhookVerifier, triggered_at,
};

/// `JSON.stringify(JSON.parse(body))` as JavaScript computes it: the bytes Contentstack would
/// have signed if `body` is a re-encoding of what it sent. `None` when `body` is not JSON that
/// `JSON.parse` accepts.
///
/// ```
/// use countersign_core::contentstack::json_reencode;
/// let pretty = b"{\n  \"b\": 1.0,\n  \"1\": \"\\u00e9\"\n}";
/// assert_eq!(json_reencode(pretty).unwrap(), "{\"1\":\"é\",\"b\":1}".as_bytes());
/// ```
#[must_use]
pub fn json_reencode(body: &[u8]) -> Option<Vec<u8>> {
    crate::js::json::canonicalize(body).ok()
}
