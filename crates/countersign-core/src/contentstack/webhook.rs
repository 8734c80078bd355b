//! Verifying a webhook delivery: signature (RSA or HMAC), then freshness.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::HeaderMap;

use super::{Error, ErrorKind, HmacSecret, KeySet, SaltLength};
use crate::crypto::{HMAC_SHA256_LEN, constant_time_eq, sha256};
use crate::js;
use crate::replay::ReplayKey;

/// What matched, the canonical bytes when the JSON fallback was needed, and the SHA-256 of the
/// bytes that verified.
type RsaMatch = (VerifiedBy, Option<Vec<u8>>, [u8; 32]);

/// `X-Contentstack-Request-Signature`: `v1=<base64 RSA-PSS signature>[,v1=...]`.
pub const RSA_SIGNATURE_HEADER: &str = "x-contentstack-request-signature";
/// `x-contentstack-hmac-signature`: `t=<unix seconds>,v1=<hex>[,v1=<hex>]`.
pub const HMAC_SIGNATURE_HEADER: &str = "x-contentstack-hmac-signature";

/// Contentstack's documented retry schedule: after a failed attempt (a non-2xx answer, or none
/// within [`ATTEMPT_TIMEOUT`]) it retries four times, about this long after each failure.
pub const RETRY_SCHEDULE: [Duration; 4] = [
    Duration::from_secs(5),
    Duration::from_secs(25),
    Duration::from_secs(125),
    Duration::from_secs(625),
];
/// How long Contentstack waits for an answer to one attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The latest the last automatic retry arrives after the event, should Contentstack not
/// refresh `triggered_at` (or `t`) on a retry (undocumented either way): the four intervals of
/// [`RETRY_SCHEDULE`] plus five attempts that each waited [`ATTEMPT_TIMEOUT`], 930 s.
pub const LAST_RETRY_AFTER: Duration = Duration::from_secs(5 + 25 + 125 + 625 + 5 * 30);
/// How old a delivery may be by default: 30 minutes, [`LAST_RETRY_AFTER`] with a margin of
/// nearly as much again, so that no automatic retry of a delivery is refused as stale.
///
/// A long tolerance is safe with a replay guard, which remembers every delivery for the whole
/// window and answers a replay as a duplicate; without one, a captured delivery can be
/// replayed for as long as the tolerance.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(30 * 60);
/// How far ahead of our clock a signed time may be by default: 60 seconds.
pub const DEFAULT_FUTURE_SKEW: Duration = Duration::from_secs(60);

/// At most this many `v1` elements are tried: each costs cryptography.
pub const MAX_SIGNATURE_ELEMENTS: usize = 4;
/// A longer signature header is refused unread (four RSA-4096 signatures fit easily).
pub const MAX_SIGNATURE_HEADER_LEN: usize = 4096;

/// Which signature method a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureMethod {
    /// RSA-PSS, `X-Contentstack-Request-Signature` (the default method, "CS Cert").
    Rsa,
    /// HMAC-SHA256, `x-contentstack-hmac-signature` (the newer, opt-in method).
    Hmac,
}

/// What matched.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifiedBy {
    /// An RSA-PSS signature.
    Rsa {
        /// Which key of the set, counting from 0.
        key_index: usize,
        /// That key's fingerprint.
        key_fingerprint: String,
        /// Which `v1` element of the header, counting from 0.
        element: usize,
        /// The salt length the signature used.
        salt: SaltLength,
    },
    /// An HMAC-SHA256 signature.
    Hmac {
        /// Which configured secret, counting from 0.
        secret_index: usize,
        /// Which `v1` element of the header, counting from 0.
        element: usize,
    },
}

/// Verifies Contentstack webhook deliveries.
///
/// Defaults: the RSA method on, no HMAC secret, a tolerance of [`DEFAULT_TOLERANCE`], a future
/// skew of [`DEFAULT_FUTURE_SKEW`], the JSON fallback off.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::{Duration, SystemTime};
/// use countersign_core::contentstack::{KeySet, SaltLength, SigningKey, WebhookVerifier};
/// use http::HeaderMap;
///
/// # let private_pem = include_str!("../../tests/data/keys/contentstack-a.private.pem");
/// let signing_key = SigningKey::from_pem(private_pem)?; // stands in for Contentstack
/// let keys = KeySet::from(signing_key.public_key().clone());
///
/// let body = br#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","event":"publish","api_key":"blt1","data":{}}"#;
/// let mut headers = HeaderMap::new();
/// headers.insert("x-contentstack-request-signature", signing_key.sign_webhook(body, SaltLength::Digest)?.parse()?);
///
/// let verifier = WebhookVerifier::new().with_tolerance(Duration::from_secs(300));
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_721_897_330);
/// let webhook = verifier.verify(&headers, body, Some(&keys), now)?;
/// assert_eq!(webhook.event(), Some("publish"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct WebhookVerifier {
    rsa: bool,
    hmac_secrets: Vec<HmacSecret>,
    tolerance: Duration,
    future_skew: Duration,
    json_fallback: bool,
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
            tolerance: DEFAULT_TOLERANCE,
            future_skew: DEFAULT_FUTURE_SKEW,
            json_fallback: false,
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

    /// Accepts HMAC-signed deliveries signed with `secret`; add several for a rotation.
    #[must_use]
    pub fn with_hmac_secret(mut self, secret: HmacSecret) -> Self {
        self.hmac_secrets.push(secret);
        self
    }

    /// How old a delivery may be (`triggered_at`, or `t` of the HMAC header).
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// How far ahead of this machine's clock a signed time may be.
    #[must_use]
    pub fn with_future_skew(mut self, skew: Duration) -> Self {
        self.future_skew = skew;
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

    /// Verifies a delivery by whichever [`method`](Self::method) applies: signature, then
    /// freshness. `body` is the raw body; `keys` are needed for the RSA method (`None`: none
    /// available yet).
    ///
    /// # Errors
    /// An [`Error`] whose [`kind`](Error::kind) says why.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        keys: Option<&KeySet>,
        now: SystemTime,
    ) -> Result<VerifiedWebhook, Error> {
        match self.method(headers) {
            Some(SignatureMethod::Hmac) => self.verify_hmac(headers, body, now),
            Some(SignatureMethod::Rsa) => {
                let keys = keys.ok_or_else(|| {
                    Error::new(
                        ErrorKind::KeyUnavailable,
                        "no Contentstack public key is available yet",
                    )
                })?;
                self.verify_rsa(headers, body, keys, now)
            }
            None => Err(Error::new(
                ErrorKind::MissingSignature,
                self.missing_signature_message(),
            )),
        }
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

    /// Verifies an RSA-signed delivery: the signature over the raw body (salt length 32, then
    /// the maximum; then the JSON fallback if on), then `triggered_at`.
    ///
    /// # Errors
    /// An [`Error`] whose [`kind`](Error::kind) says why.
    pub fn verify_rsa(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        keys: &KeySet,
        now: SystemTime,
    ) -> Result<VerifiedWebhook, Error> {
        let (verified_by, canonical, digest) = self.check_rsa(headers, body, keys)?;
        let replay_key = ReplayKey::contentstack_delivery(&digest);
        let signed = canonical.as_deref().unwrap_or(body);
        let envelope = Envelope::parse(signed)?;
        let triggered_at = envelope.triggered_at()?;
        self.check_freshness(triggered_at, now, "triggered_at")?;
        Ok(VerifiedWebhook {
            verified_by,
            canonical_body: canonical,
            signed_at: triggered_at,
            envelope,
            replay_key,
        })
    }

    /// Checks only the RSA signature (no freshness): which key, element and salt matched, and
    /// the canonical bytes when the JSON fallback was needed.
    ///
    /// # Errors
    /// [`ErrorKind::MissingSignature`], [`ErrorKind::MalformedSignature`] or
    /// [`ErrorKind::SignatureMismatch`].
    pub fn check_rsa_signature(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        keys: &KeySet,
    ) -> Result<(VerifiedBy, Option<Vec<u8>>), Error> {
        self.check_rsa(headers, body, keys)
            .map(|(by, canonical, _)| (by, canonical))
    }

    /// [`check_rsa_signature`](Self::check_rsa_signature), and the SHA-256 of the bytes that
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

    /// Verifies an HMAC-signed delivery: `v1 = hex(HMAC-SHA256(secret, "<t>.<body>"))` for any
    /// configured secret, then `t` against the tolerance.
    ///
    /// # Errors
    /// An [`Error`] whose [`kind`](Error::kind) says why.
    pub fn verify_hmac(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedWebhook, Error> {
        let header = HmacHeader::parse(headers)?;
        let signed_at = SystemTime::UNIX_EPOCH + Duration::from_secs(header.t);
        let (verified_by, canonical) = self.check_hmac_signature(&header, body)?;
        self.check_freshness(signed_at, now, "t")?;
        let signed = canonical.as_deref().unwrap_or(body);
        let replay_key = ReplayKey::contentstack_delivery(&sha256(signed));
        let envelope = Envelope::parse(signed).unwrap_or_default();
        Ok(VerifiedWebhook {
            verified_by,
            canonical_body: canonical,
            signed_at,
            envelope,
            replay_key,
        })
    }

    fn check_hmac_signature(
        &self,
        header: &HmacHeader,
        body: &[u8],
    ) -> Result<(VerifiedBy, Option<Vec<u8>>), Error> {
        self.match_body(body, |bytes| self.match_hmac(header, bytes))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::SignatureMismatch,
                    mismatch_message("secret", self.hmac_secrets.len(), self.json_fallback),
                )
            })
    }

    /// Tries `matches` on the raw body, then, with the fallback on, on its JSON
    /// re-serialization, which is returned when that is what matched.
    fn match_body<T>(
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

    fn match_hmac(&self, header: &HmacHeader, body: &[u8]) -> Option<VerifiedBy> {
        self.hmac_secrets
            .iter()
            .enumerate()
            .find_map(|(secret_index, secret)| {
                let mac = secret.mac(&header.t_text, body);
                header
                    .v1
                    .iter()
                    .position(|candidate| constant_time_eq(candidate, &mac))
                    .map(|element| VerifiedBy::Hmac {
                        secret_index,
                        element,
                    })
            })
    }

    fn check_freshness(
        &self,
        signed_at: SystemTime,
        now: SystemTime,
        what: &str,
    ) -> Result<(), Error> {
        match now.duration_since(signed_at) {
            Ok(age) if age > self.tolerance => Err(Error::new(
                ErrorKind::Expired,
                format!(
                    "{what} is {} s old; deliveries are accepted for {} s (is this machine's clock right?)",
                    age.as_secs(),
                    self.tolerance.as_secs()
                ),
            )),
            Ok(_) => Ok(()),
            Err(ahead) if ahead.duration() > self.future_skew => Err(Error::new(
                ErrorKind::TimestampInFuture,
                format!(
                    "{what} is {} s in the future; at most {} s of clock skew is accepted",
                    ahead.duration().as_secs(),
                    self.future_skew.as_secs()
                ),
            )),
            Err(_) => Ok(()),
        }
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
            .finish()
    }
}

fn mismatch_message(what: &str, count: usize, fallback: bool) -> String {
    let tried = if fallback {
        "over the raw body nor over its JSON re-serialization"
    } else {
        "over the raw body (the JSON fallback is off)"
    };
    format!("no signature matches any of the {count} {what}(s) {tried}")
}

/// `JSON.stringify(JSON.parse(body))`, when that differs from the body.
fn reencoded(body: &[u8]) -> Option<Vec<u8>> {
    js::json::canonicalize(body)
        .ok()
        .filter(|canonical| canonical != body)
}

/// The value of a header, its repeated values joined with `,` as one list.
fn header_list(headers: &HeaderMap, name: &str) -> Result<Option<String>, Error> {
    let mut values = headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let mut joined = String::new();
    for value in values {
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(&js::header_text(value.as_bytes()));
        if joined.len() > MAX_SIGNATURE_HEADER_LEN {
            return Err(Error::new(
                ErrorKind::MalformedSignature,
                format!("{name} is longer than {MAX_SIGNATURE_HEADER_LEN} bytes"),
            ));
        }
    }
    Ok(Some(joined))
}

/// The `prefix=value` elements of a signature header; each is split on its first `=` only.
fn elements(list: &str) -> impl Iterator<Item = (&str, &str)> {
    list.split(',')
        .filter_map(|element| element.split_once('='))
        .map(|(prefix, value)| (prefix.trim(), value.trim()))
}

/// The decoded `v1` signatures of the RSA header (padded or unpadded base64), at most
/// [`MAX_SIGNATURE_ELEMENTS`].
fn rsa_signatures(headers: &HeaderMap) -> Result<Vec<Vec<u8>>, Error> {
    let list = header_list(headers, RSA_SIGNATURE_HEADER)?.ok_or_else(|| {
        Error::new(
            ErrorKind::MissingSignature,
            format!("the request has no {RSA_SIGNATURE_HEADER} header"),
        )
    })?;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let v1: Vec<&str> = elements(&list)
        .filter(|(prefix, _)| *prefix == "v1")
        .map(|(_, value)| value)
        .take(MAX_SIGNATURE_ELEMENTS)
        .collect();
    if v1.is_empty() {
        return Err(Error::new(
            ErrorKind::MalformedSignature,
            format!("{RSA_SIGNATURE_HEADER} has no v1=<signature> element"),
        ));
    }
    let decoded: Vec<Vec<u8>> = v1
        .iter()
        .filter_map(|value| engine.decode(value).ok())
        .collect();
    if decoded.is_empty() {
        return Err(Error::new(
            ErrorKind::MalformedSignature,
            format!("no v1 element of {RSA_SIGNATURE_HEADER} is base64"),
        ));
    }
    Ok(decoded)
}

/// The first (key, element, salt) under which a signature verifies the message whose SHA-256
/// is `digest`.
fn match_rsa(signatures: &[Vec<u8>], digest: &[u8; 32], keys: &KeySet) -> Option<VerifiedBy> {
    for (key_index, key) in keys.iter().enumerate() {
        for (element, signature) in signatures.iter().enumerate() {
            for salt in [SaltLength::Digest, SaltLength::Max] {
                if key.verify_pss(digest, signature, salt) {
                    return Some(VerifiedBy::Rsa {
                        key_index,
                        key_fingerprint: key.fingerprint().to_owned(),
                        element,
                        salt,
                    });
                }
            }
        }
    }
    None
}

/// `x-contentstack-hmac-signature`, parsed.
struct HmacHeader {
    t: u64,
    t_text: String,
    v1: Vec<[u8; HMAC_SHA256_LEN]>,
}

impl HmacHeader {
    fn parse(headers: &HeaderMap) -> Result<Self, Error> {
        let list = header_list(headers, HMAC_SIGNATURE_HEADER)?.ok_or_else(|| {
            Error::new(
                ErrorKind::MissingSignature,
                format!("the request has no {HMAC_SIGNATURE_HEADER} header"),
            )
        })?;
        let mut t = None;
        let mut v1 = Vec::new();
        let mut v1_seen = 0;
        for (prefix, value) in elements(&list) {
            match prefix {
                "t" if t.is_some() => {
                    return Err(Error::new(
                        ErrorKind::MalformedTimestamp,
                        format!("{HMAC_SIGNATURE_HEADER} has two t elements"),
                    ));
                }
                "t" => t = Some(value.to_owned()),
                "v1" => {
                    v1_seen += 1;
                    let mut mac = [0u8; HMAC_SHA256_LEN];
                    if v1.len() < MAX_SIGNATURE_ELEMENTS
                        && hex::decode_to_slice(value, &mut mac).is_ok()
                    {
                        v1.push(mac);
                    }
                }
                _ => {}
            }
        }
        let t_text = t.ok_or_else(|| {
            Error::new(
                ErrorKind::MissingTimestamp,
                format!("{HMAC_SIGNATURE_HEADER} has no t=<unix seconds> element"),
            )
        })?;
        let t = (!t_text.is_empty()
            && t_text.len() <= 12
            && t_text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| t_text.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| {
            Error::new(
                ErrorKind::MalformedTimestamp,
                format!("t of {HMAC_SIGNATURE_HEADER} is not Unix seconds"),
            )
        })?;
        if v1.is_empty() {
            let why = if v1_seen == 0 {
                "has no v1=<hex> element"
            } else {
                "has no v1 element of 64 hex digits"
            };
            return Err(Error::new(
                ErrorKind::MalformedSignature,
                format!("{HMAC_SIGNATURE_HEADER} {why}"),
            ));
        }
        Ok(Self { t, t_text, v1 })
    }
}

/// The top-level fields of a delivery that every handler needs; `data` stays in the body for
/// the handler's own types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    triggered_at: Option<String>,
    module: Option<String>,
    event: Option<String>,
    api_key: Option<String>,
    installation_app_uid: Option<String>,
}

#[derive(serde::Deserialize)]
struct RawEnvelope {
    triggered_at: Option<serde_json::Value>,
    module: Option<serde_json::Value>,
    event: Option<serde_json::Value>,
    api_key: Option<serde_json::Value>,
    #[serde(default)]
    data: InstallationAppUid,
}

/// `data.app_installation.app_uid` when `data` has it; any other `data` (an object without it,
/// an array, a string, `null`) is skipped without being built.
#[derive(Default)]
struct InstallationAppUid(Option<String>);

impl<'de> serde::Deserialize<'de> for InstallationAppUid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Looks for `key` in an object, then hands its value to `Inner`.
        struct Field<Inner>(&'static str, std::marker::PhantomData<Inner>);

        impl<'de, Inner: serde::Deserialize<'de> + Default> serde::de::Visitor<'de> for Field<Inner> {
            type Value = Inner;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Inner, A::Error> {
                let mut found = Inner::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == self.0 {
                        found = map.next_value()?;
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(found)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Inner, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Inner::default())
            }

            fn visit_bool<E>(self, _: bool) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_unit<E>(self) -> Result<Inner, E> {
                Ok(Inner::default())
            }
        }

        /// `app_uid` of `app_installation`, when it is a string.
        #[derive(Default)]
        struct AppUid(Option<String>);

        impl<'de> serde::Deserialize<'de> for AppUid {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value: Option<serde_json::Value> =
                    deserializer.deserialize_any(Field::<Option<serde_json::Value>>(
                        "app_uid",
                        std::marker::PhantomData,
                    ))?;
                Ok(Self(match value {
                    Some(serde_json::Value::String(uid)) => Some(uid),
                    _ => None,
                }))
            }
        }

        let AppUid(uid) = deserializer.deserialize_any(Field::<AppUid>(
            "app_installation",
            std::marker::PhantomData,
        ))?;
        Ok(Self(uid))
    }
}

impl Envelope {
    fn parse(body: &[u8]) -> Result<Self, Error> {
        let raw: RawEnvelope = serde_json::from_slice(body).map_err(|e| {
            Error::new(
                ErrorKind::MalformedTimestamp,
                format!(
                    "the body is not a JSON object with a triggered_at ({})",
                    e.classify_name()
                ),
            )
        })?;
        let text = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        Ok(Self {
            triggered_at: raw.triggered_at.map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
            module: text(raw.module),
            event: text(raw.event),
            api_key: text(raw.api_key),
            installation_app_uid: raw.data.0,
        })
    }

    fn triggered_at(&self) -> Result<SystemTime, Error> {
        let text = self.triggered_at.as_deref().ok_or_else(|| {
            Error::new(ErrorKind::MissingTimestamp, "the body has no triggered_at")
        })?;
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map(SystemTime::from)
            .map_err(|_| {
                Error::new(
                    ErrorKind::MalformedTimestamp,
                    "triggered_at is not an RFC 3339 timestamp",
                )
            })
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "not an object of the expected shape",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

/// A delivery whose signature and freshness verified: what it proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedWebhook {
    verified_by: VerifiedBy,
    canonical_body: Option<Vec<u8>>,
    signed_at: SystemTime,
    envelope: Envelope,
    replay_key: ReplayKey,
}

impl VerifiedWebhook {
    /// What matched: key, element and salt length, or secret.
    #[must_use]
    pub fn verified_by(&self) -> &VerifiedBy {
        &self.verified_by
    }

    /// What identifies this delivery (replay protection, idempotent writes): the digest of the
    /// verified body, the same for every form in which Contentstack may send the delivery
    /// again. The rules are in [`crate::replay`].
    #[must_use]
    pub fn replay_key(&self) -> ReplayKey {
        self.replay_key
    }

    /// The delivery's id: [`replay_key`](Self::replay_key) in lower-case hex, 64 characters.
    #[must_use]
    pub fn delivery_id(&self) -> String {
        self.replay_key.to_hex()
    }

    /// When the delivery was signed: `triggered_at` (RSA) or `t` (HMAC).
    #[must_use]
    pub fn signed_at(&self) -> SystemTime {
        self.signed_at
    }

    /// Whether the signature matched only after JSON re-serialization (the fallback).
    #[must_use]
    pub fn reencoded(&self) -> bool {
        self.canonical_body.is_some()
    }

    /// The canonical bytes the fallback verified, when it was needed.
    #[must_use]
    pub fn canonical_body(&self) -> Option<&[u8]> {
        self.canonical_body.as_deref()
    }

    /// The bytes a handler must receive: the canonical ones when the fallback matched, the raw
    /// ones otherwise.
    #[must_use]
    pub fn verified_body<'a>(&'a self, raw: &'a [u8]) -> &'a [u8] {
        self.canonical_body.as_deref().unwrap_or(raw)
    }

    /// `triggered_at`, as sent.
    #[must_use]
    pub fn triggered_at(&self) -> Option<&str> {
        self.envelope.triggered_at.as_deref()
    }

    /// `module`: `entry`, `asset`, `content_type`, `release`, `app_installation`, ...
    #[must_use]
    pub fn module(&self) -> Option<&str> {
        self.envelope.module.as_deref()
    }

    /// `event`: `create`, `update`, `delete`, `publish`, `unpublish`, `install`, ...
    #[must_use]
    pub fn event(&self) -> Option<&str> {
        self.envelope.event.as_deref()
    }

    /// `api_key`: the stack.
    #[must_use]
    pub fn api_key(&self) -> Option<&str> {
        self.envelope.api_key.as_deref()
    }

    /// Whether this is an installation event (`module` `app_installation`: `install`,
    /// `upgrade`, `uninstall`, ...), which says which app it is for.
    #[must_use]
    pub fn is_installation_event(&self) -> bool {
        self.module() == Some(INSTALLATION_MODULE)
    }

    /// `data.app_installation.app_uid`: the app an installation event is for.
    #[must_use]
    pub fn installation_app_uid(&self) -> Option<&str> {
        self.envelope.installation_app_uid.as_deref()
    }
}

/// The `module` of installation events.
pub const INSTALLATION_MODULE: &str = "app_installation";
