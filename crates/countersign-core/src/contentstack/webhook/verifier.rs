//! [`WebhookVerifier`]: the settings, the entry point, and the signature and freshness checks.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderMap;

use super::envelope::Envelope;
use super::headers::{HmacHeader, match_rsa, rsa_signatures};
use super::{
    DEFAULT_FUTURE_SKEW, DEFAULT_TOLERANCE, HMAC_SIGNATURE_HEADER, RSA_SIGNATURE_HEADER,
    SignatureMethod, VerifiedBy, VerifiedWebhook,
};
use crate::bound::Bound;
use crate::contentstack::{
    Error, ErrorKind, HmacSecret, KeySet, KeySource, StackCheck, Tenancy, with_fresh_keys,
};
use crate::crypto::sha256;
use crate::freshness::{Outside, Window};
use crate::js;
use crate::verdict::Verdict;

/// What matched, the canonical bytes when the JSON fallback was needed, and the SHA-256 of the
/// bytes that verified.
type RsaMatch = (VerifiedBy, Option<Vec<u8>>, [u8; 32]);

/// Verifies Contentstack webhook deliveries.
///
/// Defaults: the RSA method on, no HMAC secret, a tolerance of [`DEFAULT_TOLERANCE`], a future
/// skew of [`DEFAULT_FUTURE_SKEW`], the JSON fallback off, the replay namespace of the app uid
/// ([`with_namespace`](Self::with_namespace)).
///
/// A backend calls [`verify`](Self::verify) (the `countersign` crate's layer does); the
/// [`diagnose`](Self::diagnose) runs its checks one at a time, for diagnosis and
/// tests.
#[derive(Clone)]
pub struct WebhookVerifier {
    pub(super) rsa: bool,
    pub(super) hmac_secrets: Vec<Bound<HmacSecret>>,
    /// How many MACs a delivery that no secret verifies costs: as many as the most secrets any
    /// one stack has (those bound to it and those bound to none), whatever its stack, so that
    /// the answer's time does not tell which stacks have secrets here.
    pub(super) hmac_pad: usize,
    pub(super) tolerance: Duration,
    pub(super) future_skew: Duration,
    pub(super) json_fallback: bool,
    pub(super) namespace: Option<Arc<str>>,
}

impl Default for WebhookVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookVerifier {
    /// A verifier of RSA-signed deliveries with the defaults.
    #[must_use]
    pub fn new() -> Self {
        Self {
            rsa: true,
            hmac_secrets: Vec::new(),
            hmac_pad: 0,
            tolerance: DEFAULT_TOLERANCE,
            future_skew: DEFAULT_FUTURE_SKEW,
            json_fallback: false,
            namespace: None,
        }
    }

    /// A verifier of HMAC-signed deliveries only: an RSA signature is not looked at.
    #[must_use]
    pub fn hmac_only(secret: HmacSecret) -> Self {
        Self::new().with_rsa(false).with_hmac_secret(secret)
    }

    /// Whether RSA-signed deliveries are accepted (they are by default).
    #[must_use]
    pub fn with_rsa(mut self, on: bool) -> Self {
        self.rsa = on;
        self
    }

    /// Accepts HMAC-signed deliveries signed with `secret`, for any stack; add several for a
    /// rotation.
    #[must_use]
    pub fn with_hmac_secret(mut self, secret: HmacSecret) -> Self {
        self.hmac_secrets.push(Bound::any(secret));
        self.hmac_pad = hmac_pad(&self.hmac_secrets);
        self
    }

    /// Accepts HMAC-signed deliveries signed with `secret` only when they are for the stack
    /// `api_key` (the body's signed `api_key`). Contentstack's HMAC secrets belong to one
    /// webhook of one stack, set by that stack's owner: bound, a secret that one tenant
    /// chose cannot sign a delivery that claims another tenant's stack.
    #[must_use]
    pub fn with_stack_hmac_secret(
        mut self,
        api_key: impl Into<String>,
        secret: HmacSecret,
    ) -> Self {
        self.hmac_secrets.push(Bound::to(api_key.into(), secret));
        self.hmac_pad = hmac_pad(&self.hmac_secrets);
        self
    }

    /// Whether any HMAC secret is configured (bound to a stack or not).
    #[must_use]
    pub fn has_hmac_secrets(&self) -> bool {
        !self.hmac_secrets.is_empty()
    }

    /// The namespace of this verifier's replay keys ([`crate::replay`]): deliveries of two
    /// namespaces never share a key, so two apps can share one store. By default the app uid
    /// of the [`Tenancy`] given to [`verify`](Self::verify), or none.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(Arc::from(namespace.into()));
        self
    }

    /// How old a delivery may be (`triggered_at`, or `t` of the HMAC header).
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance.min(crate::freshness::MAX_WINDOW);
        self
    }

    /// How far ahead of this machine's clock a signed time may be.
    #[must_use]
    pub fn with_future_skew(mut self, skew: Duration) -> Self {
        self.future_skew = skew.min(crate::freshness::MAX_WINDOW);
        self
    }

    /// When the raw bytes fail, also verify what JavaScript's `JSON.stringify(JSON.parse(body))`
    /// gives, for platforms that hand over re-encoded JSON. When that matches, the verdict
    /// carries those canonical bytes, and they, never the raw ones, must go to the handler.
    /// Off by default.
    #[must_use]
    pub fn with_json_fallback(mut self, on: bool) -> Self {
        self.json_fallback = on;
        self
    }

    /// The tolerance in force.
    #[must_use]
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// How long a signature stays acceptable: the tolerance plus the future skew. A replay
    /// store must remember a delivery at least this long.
    #[must_use]
    pub fn acceptance_window(&self) -> Duration {
        self.tolerance + self.future_skew
    }

    /// Whether the JSON fallback is on.
    #[must_use]
    pub fn json_fallback(&self) -> bool {
        self.json_fallback
    }

    /// Which method this verifier would use for a request with these headers: HMAC when
    /// secrets are configured and its header is present, else RSA when on and its header is
    /// present. `None`: the request carries no signature this verifier accepts.
    #[must_use]
    pub fn method(&self, headers: &HeaderMap) -> Option<SignatureMethod> {
        if !self.hmac_secrets.is_empty() && headers.contains_key(HMAC_SIGNATURE_HEADER) {
            Some(SignatureMethod::Hmac)
        } else if self.rsa && headers.contains_key(RSA_SIGNATURE_HEADER) {
            Some(SignatureMethod::Rsa)
        } else {
            None
        }
    }

    /// Whether RSA-signed deliveries are accepted, so that keys are needed.
    #[must_use]
    pub fn needs_keys(&self) -> bool {
        self.rsa
    }

    /// The entry point: verifies a delivery as it arrived and says whose it is.
    ///
    /// `headers` and `body` are the request's (the body buffered whole); RSA keys come from
    /// `keys`, and a signature that fails against them makes the source look once for a
    /// rotated key ([`KeySource::refresh`]); `tenancy` says which deliveries are this app's.
    /// The verdict holds the facts, the bytes the handler must read (the canonical ones when
    /// the JSON fallback matched), the delivery's identity and window, and its stack.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use countersign_core::contentstack::{SaltLength, SigningKey, StaticKeys, Tenancy, WebhookBody, WebhookVerifier};
    /// use http::HeaderMap;
    ///
    /// # let private_pem = include_str!("../../../tests/data/keys/contentstack-a.private.pem");
    /// let signing_key = SigningKey::from_pem(private_pem)?; // stands in for Contentstack
    /// let keys = StaticKeys::new(signing_key.public_key().clone().into());
    /// let at = UNIX_EPOCH + Duration::from_secs(1_721_897_326);
    /// let body = WebhookBody::new("entry", "publish").with_api_key("blt1").to_bytes(at);
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-contentstack-request-signature", signing_key.sign_webhook(&body, SaltLength::Digest)?.parse()?);
    ///
    /// let verifier = WebhookVerifier::new();
    /// let tenancy = Tenancy::new();
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// let verdict = verifier.verify(&headers, body.into(), &keys, &tenancy, at).await?;
    /// assert_eq!(verdict.tenant(), Some("blt1"));
    /// assert_eq!(verdict.event(), Some(countersign_core::contentstack::Event::Publish(None)));
    /// # Ok::<_, countersign_core::contentstack::Error>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// An [`Error`] whose [`kind`](Error::kind) says why: the signature, the time, no key yet
    /// ([`ErrorKind::KeyUnavailable`]), or not this app's ([`ErrorKind::AppMismatch`],
    /// [`ErrorKind::StackNotAllowed`], [`ErrorKind::TenantCheckUnavailable`]).
    pub async fn verify<K: KeySource, S: StackCheck>(
        &self,
        headers: &HeaderMap,
        body: Bytes,
        keys: &K,
        tenancy: &Tenancy<S>,
        now: SystemTime,
    ) -> Result<Verdict<VerifiedWebhook>, Error> {
        let mut webhook = if self.method(headers) == Some(SignatureMethod::Rsa) {
            with_fresh_keys(
                keys,
                |keys| self.step_rsa(headers, &body, keys, now),
                |error: &Error| error.kind() == ErrorKind::SignatureMismatch,
            )
            .await?
        } else {
            self.step_with_keys(headers, &body, None, now)?
        };
        tenancy.check(&webhook).await?;
        if let (None, Some(app_uid)) = (&self.namespace, tenancy.app_uid()) {
            webhook.namespace = Some(Arc::from(app_uid));
        }
        let body = webhook.canonical_body.take().map_or(body, Bytes::from);
        Ok(Verdict::new(webhook, body, Some(self.acceptance_window())))
    }

    /// [`Diagnose::verify_with_keys`](crate::contentstack::diagnostic::Diagnose::verify_with_keys).
    pub(crate) fn step_with_keys(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        keys: Option<&KeySet>,
        now: SystemTime,
    ) -> Result<VerifiedWebhook, Error> {
        match self.method(headers) {
            Some(SignatureMethod::Hmac) => self.step_hmac(headers, body, now),
            Some(SignatureMethod::Rsa) => {
                let keys = keys.ok_or_else(|| {
                    Error::new(
                        ErrorKind::KeyUnavailable,
                        "no Contentstack public key is available yet",
                    )
                })?;
                self.step_rsa(headers, body, keys, now)
            }
            None => Err(self.no_accepted_signature(headers)),
        }
    }

    /// Why a request carries no signature this verifier accepts: none at all, or one of a
    /// method it is not set up for (which names the setting to add).
    fn no_accepted_signature(&self, headers: &HeaderMap) -> Error {
        if headers.contains_key(HMAC_SIGNATURE_HEADER) && self.hmac_secrets.is_empty() {
            return Error::new(
                ErrorKind::MethodNotConfigured,
                format!(
                    "the request carries {HMAC_SIGNATURE_HEADER}, but this verifier has no HMAC \
                     secret: add WebhookVerifier::with_stack_hmac_secret (or with_hmac_secret)"
                ),
            );
        }
        if headers.contains_key(RSA_SIGNATURE_HEADER) && !self.rsa {
            return Error::new(
                ErrorKind::MethodNotConfigured,
                format!(
                    "the request carries {RSA_SIGNATURE_HEADER}, but this verifier takes no RSA \
                     signature: use WebhookVerifier::with_rsa(true) and a key source"
                ),
            );
        }
        Error::new(
            ErrorKind::MissingSignature,
            self.missing_signature_message(),
        )
    }

    fn missing_signature_message(&self) -> String {
        match (self.rsa, self.hmac_secrets.is_empty()) {
            (true, true) => format!("the request has no {RSA_SIGNATURE_HEADER} header"),
            (false, _) => format!("the request has no {HMAC_SIGNATURE_HEADER} header"),
            (true, false) => format!(
                "the request has neither {RSA_SIGNATURE_HEADER} nor {HMAC_SIGNATURE_HEADER}"
            ),
        }
    }

    /// [`Diagnose::verify_rsa`](crate::contentstack::diagnostic::Diagnose::verify_rsa).
    pub(crate) fn step_rsa(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        keys: &KeySet,
        now: SystemTime,
    ) -> Result<VerifiedWebhook, Error> {
        let (verified_by, canonical, digest) = self.check_rsa(headers, body, keys)?;
        let signed = canonical.as_deref().unwrap_or(body);
        let envelope = Envelope::parse(signed)?;
        let triggered_at = envelope.signed_at()?;
        self.check_freshness(triggered_at, now, "triggered_at")?;
        Ok(self.verified(verified_by, canonical, triggered_at, envelope, digest))
    }

    /// [`Diagnose::rsa_signature`](crate::contentstack::diagnostic::Diagnose::rsa_signature).
    pub(crate) fn step_rsa_signature(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        keys: &KeySet,
    ) -> Result<(VerifiedBy, Option<Vec<u8>>), Error> {
        self.check_rsa(headers, body, keys)
            .map(|(by, canonical, _)| (by, canonical))
    }

    /// [`step_rsa_signature`](Self::step_rsa_signature), and the SHA-256 of the bytes that
    /// verified: each candidate body is hashed once, for every key, element and salt length.
    fn check_rsa(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        keys: &KeySet,
    ) -> Result<RsaMatch, Error> {
        let signatures = rsa_signatures(headers)?;
        self.match_body(body, |bytes| {
            let digest = sha256(bytes);
            match_rsa(&signatures, &digest, keys).map(|by| (by, digest))
        })
        .map(|((by, digest), canonical)| (by, canonical, digest))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::SignatureMismatch,
                mismatch_message("key", keys.len(), self.json_fallback),
            )
        })
    }

    /// [`Diagnose::verify_hmac`](crate::contentstack::diagnostic::Diagnose::verify_hmac).
    pub(crate) fn step_hmac(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedWebhook, Error> {
        let header = HmacHeader::parse(headers)?;
        let signed_at = crate::freshness::unix_seconds(header.t);
        let (verified_by, canonical, envelope) = self.check_hmac_signature(&header, body)?;
        self.check_freshness(signed_at, now, "t")?;
        let signed = canonical.as_deref().unwrap_or(body);
        let digest = sha256(signed);
        Ok(self.verified(verified_by, canonical, signed_at, envelope, digest))
    }

    /// The facts of a delivery whose signature and time verified, in this verifier's
    /// namespace.
    fn verified(
        &self,
        verified_by: VerifiedBy,
        canonical: Option<Vec<u8>>,
        signed_at: SystemTime,
        envelope: Envelope,
        body_sha256: [u8; 32],
    ) -> VerifiedWebhook {
        VerifiedWebhook {
            verified_by,
            reencoded: canonical.is_some(),
            canonical_body: canonical,
            signed_at,
            envelope,
            body_sha256,
            namespace: self.namespace.clone(),
        }
    }

    /// Tries `matches` on the raw body, then, with the fallback on, on its JSON
    /// re-serialization, which is returned when that is what matched.
    pub(super) fn match_body<T>(
        &self,
        body: &[u8],
        matches: impl Fn(&[u8]) -> Option<T>,
    ) -> Option<(T, Option<Vec<u8>>)> {
        if let Some(by) = matches(body) {
            return Some((by, None));
        }
        let canonical = self.json_fallback.then(|| reencoded(body)).flatten()?;
        matches(&canonical).map(|by| (by, Some(canonical)))
    }

    fn check_freshness(
        &self,
        signed_at: SystemTime,
        now: SystemTime,
        what: &str,
    ) -> Result<(), Error> {
        let window = Window {
            max_age: Some(self.tolerance),
            expired_at_limit: false,
            future_skew: self.future_skew,
        };
        window.check(signed_at, now).map_err(|outside| match outside {
            Outside::Expired { age, max_age } => Error::new(
                ErrorKind::Expired,
                format!(
                    "{what} is {} s old; deliveries are accepted for {} s (is this machine's clock right?)",
                    age.as_secs(),
                    max_age.as_secs()
                ),
            ),
            Outside::Ahead { ahead, skew } => Error::new(
                ErrorKind::TimestampInFuture,
                format!(
                    "{what} is {} s in the future; at most {} s of clock skew is accepted",
                    ahead.as_secs(),
                    skew.as_secs()
                ),
            ),
        })
    }
}

impl fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("rsa", &self.rsa)
            .field(
                "hmac_secrets",
                &format_args!("<{} redacted>", self.hmac_secrets.len()),
            )
            .field("tolerance", &self.tolerance)
            .field("future_skew", &self.future_skew)
            .field("json_fallback", &self.json_fallback)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// The most secrets that serve any one stack: the unbound ones and those bound to it.
fn hmac_pad(secrets: &[Bound<HmacSecret>]) -> usize {
    let mut per_stack: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut unbound = 0;
    for bound in secrets {
        match bound.tenant() {
            Some(stack) => *per_stack.entry(stack).or_default() += 1,
            None => unbound += 1,
        }
    }
    unbound + per_stack.values().copied().max().unwrap_or(0)
}

pub(super) fn mismatch_message(what: &str, count: usize, fallback: bool) -> String {
    let tried = if fallback {
        "over the raw body nor over its JSON re-serialization"
    } else {
        "over the raw body (the JSON fallback is off)"
    };
    format!("no signature matches any of the {count} {what}(s) {tried}")
}

/// `JSON.stringify(JSON.parse(body))`, when that differs from the body.
pub(super) fn reencoded(body: &[u8]) -> Option<Vec<u8>> {
    js::json::canonicalize(body)
        .ok()
        .filter(|canonical| canonical != body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bound::Bound;

    fn secret() -> HmacSecret {
        HmacSecret::new("s").unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn a_refusal_costs_as_many_macs_as_the_stack_with_the_most_secrets() {
        let pad = |secrets: Vec<Bound<HmacSecret>>| hmac_pad(&secrets);
        assert_eq!(pad(vec![]), 0);
        // One secret per stack: one MAC for any stack, its own or not.
        let each = |n: usize| (0..n).map(|i| Bound::to(format!("blt{i}"), secret()));
        assert_eq!(pad(each(1000).collect()), 1);
        // A rotation of one stack's secret: two MACs for every stack.
        let rotating: Vec<_> = each(10)
            .chain([Bound::to("blt3".into(), secret())])
            .collect();
        assert_eq!(pad(rotating), 2);
        // Unbound secrets serve every stack.
        let mixed: Vec<_> = each(10)
            .chain([Bound::any(secret()), Bound::any(secret())])
            .collect();
        assert_eq!(pad(mixed), 3);
    }
}
