//! `verifyRequest`: what an app backend does when a signed request arrives.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method};
use smallvec::SmallVec;

use super::canonical::{Head, Pairs, Text, boundary_mover};
use super::sign::{ambiguous, unix_millis};
use super::{
    APP_ID, CRN, Context, ENVIRONMENT_ID, Error, ErrorKind, IDEMPOTENCY_KEY, MAX_SIGNED_HEADERS,
    RequestKind, RequestKinds, SIGNATURE, SIGNED_HEADERS, SPACE_ID, SigningSecret, TIMESTAMP,
    TOPIC, USER_ID,
};
use crate::bound::Bound;
use crate::crypto::{HMAC_SHA256_LEN, constant_time_eq};
use crate::ip::IpAllowlist;
use crate::replay::{ReplayKey, Scope};
use crate::{ConfigError, ConfigErrorKind, Verdict, js};

/// The header a reverse proxy that strips a path prefix names it in.
pub const FORWARDED_PREFIX: &str = "x-forwarded-prefix";

/// The toolkit's default time-to-live of a signature: 30 seconds.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// How far ahead of our clock a timestamp may be by default: 60 seconds.
pub const DEFAULT_FUTURE_SKEW: Duration = Duration::from_secs(60);

/// The toolkit refuses timestamps at or before 2020-01-01T00:00:00Z.
const EARLIEST_TIMESTAMP_MS: u64 = 1_577_836_800_000;

/// Verifies signed Contentful requests against one or more signing secrets.
///
/// Defaults: a time-to-live of [`DEFAULT_TTL`], a future skew of [`DEFAULT_FUTURE_SKEW`], no
/// path prefix, every [kind](RequestKind) of request, no replay namespace
/// ([`with_namespace`](Self::with_namespace)). Cheap to clone and to share between threads.
#[derive(Clone)]
pub struct Verifier {
    secrets: Vec<Secret>,
    ttl: Duration,
    future_skew: Duration,
    path_prefix: Option<String>,
    prefix_proxies: Option<Arc<IpAllowlist>>,
    kinds: RequestKinds,
    namespace: Option<Arc<str>>,
}

/// A secret, whose it is, and the space it is bound to, if any.
#[derive(Clone)]
struct Secret {
    key: Bound<SigningSecret>,
    /// The app's signing secret, or a webhook signing secret.
    webhook: bool,
}

impl Verifier {
    /// A verifier for requests signed with `secret`, the app's signing secret (app events, app
    /// actions, frontend-signed requests).
    #[must_use]
    pub fn new(secret: SigningSecret) -> Self {
        Self {
            secrets: vec![Secret {
                key: Bound::any(secret),
                webhook: false,
            }],
            ttl: DEFAULT_TTL,
            future_skew: DEFAULT_FUTURE_SKEW,
            path_prefix: None,
            prefix_proxies: None,
            kinds: RequestKinds::ALL,
            namespace: None,
        }
    }

    /// A verifier of one space's webhooks only: `secret` is the space's webhook signing
    /// secret, bound to `space_id` ([`with_space_webhook_secret`](Self::with_space_webhook_secret));
    /// add more spaces with that call. For a webhook receiver that is no app backend.
    #[must_use]
    pub fn for_space_webhooks(space_id: impl Into<String>, secret: SigningSecret) -> Self {
        let mut verifier = Self::new(secret);
        if let Some(only) = verifier.secrets.first_mut() {
            *only = Secret {
                key: Bound::to(space_id.into(), only.key.secret.clone()),
                webhook: true,
            };
        }
        verifier
    }

    /// A verifier that accepts a request signed with any of `secrets`, the app's signing
    /// secrets.
    ///
    /// # Errors
    /// [`ConfigErrorKind::NoSecrets`] when `secrets` is empty.
    pub fn with_secrets(
        secrets: impl IntoIterator<Item = SigningSecret>,
    ) -> Result<Self, ConfigError> {
        let mut secrets = secrets.into_iter();
        let first = secrets.next().ok_or_else(|| {
            ConfigError::new(
                ConfigErrorKind::NoSecrets,
                "a Contentful verifier needs at least one signing secret",
            )
        })?;
        Ok(secrets.fold(Self::new(first), Self::with_secret))
    }

    /// Accepts requests signed with `secret` too, for a rotation: verify with the old and the
    /// next secret, switch Contentful over, then drop the old one.
    /// [`VerifiedRequest::secret_index`] tells which one matched, in the order added.
    #[must_use]
    pub fn with_secret(mut self, secret: SigningSecret) -> Self {
        self.secrets.push(Secret {
            key: Bound::any(secret),
            webhook: false,
        });
        self
    }

    /// Accepts webhooks signed with `secret`, a space's webhook signing secret, for any space.
    /// They are verified as [`RequestKind::Webhook`]. Prefer
    /// [`with_space_webhook_secret`](Self::with_space_webhook_secret): a webhook secret is set
    /// by one space's admins.
    #[must_use]
    pub fn with_webhook_secret(mut self, secret: SigningSecret) -> Self {
        self.secrets.push(Secret {
            key: Bound::any(secret),
            webhook: true,
        });
        self
    }

    /// Accepts webhooks signed with `secret` only when they sign the space `space_id`
    /// (`x-contentful-space-id`, or the space of a signed `x-contentful-crn`). Contentful's
    /// webhook signing secrets belong to one space, and its admins choose them: bound, the
    /// secret of one tenant cannot sign a request that claims another's space.
    #[must_use]
    pub fn with_space_webhook_secret(
        mut self,
        space_id: impl Into<String>,
        secret: SigningSecret,
    ) -> Self {
        self.secrets.push(Secret {
            key: Bound::to(space_id.into(), secret),
            webhook: true,
        });
        self
    }

    /// Takes only requests of these kinds; others, authentic as they are, are refused with
    /// [`ErrorKind::KindNotAllowed`]. A route that acts on app events or webhooks takes
    /// [`RequestKinds::EVENTS`]: a user of any installation can have a request signed with the
    /// app's secret through the app frontend, with any path, topic and body.
    #[must_use]
    pub fn with_kinds(mut self, kinds: RequestKinds) -> Self {
        self.kinds = kinds;
        self
    }

    /// The namespace of this verifier's replay keys ([`crate::replay`]): requests of two
    /// namespaces never share a key, so two apps can share one store. Set it to your app
    /// definition id when apps share a store; none by default. It is never read from a
    /// request: a tenant who could choose it could make itself as many shares of a store as
    /// it likes.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(Arc::from(namespace.into()));
        self
    }

    /// How long a signature stays valid after its timestamp; a request exactly `ttl` old is
    /// expired. [`Duration::ZERO`] turns the check off, as `0` does in the toolkit.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.min(crate::MAX_WINDOW);
        self
    }

    /// How far ahead of this machine's clock a timestamp may be (clocks differ). The toolkit
    /// accepts any future timestamp; we do not.
    #[must_use]
    pub fn with_future_skew(mut self, skew: Duration) -> Self {
        self.future_skew = skew.min(crate::MAX_WINDOW);
        self
    }

    /// The path prefix a reverse proxy strips before the request reaches this backend: the
    /// signature covers the path Contentful called, so the prefix is put back before verifying.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidPathPrefix`] unless `prefix` starts with `/`, does not end with
    /// `/`, and holds no `?` or `#`.
    pub fn with_path_prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        self.path_prefix = Some(validate_path_prefix(prefix)?.to_owned());
        Ok(self)
    }

    /// Takes the path prefix from [`FORWARDED_PREFIX`] when, and only when, the request's
    /// peer is one of `proxies` ([`verify_request`](Self::verify_request)); it replaces the
    /// configured prefix for that request.
    #[must_use]
    pub fn with_forwarded_prefix(mut self, proxies: IpAllowlist) -> Self {
        self.prefix_proxies = Some(Arc::new(proxies));
        self
    }

    /// How long after its timestamp a signature stays acceptable: the TTL plus the future
    /// skew. `None` when the TTL is off (signatures never expire). A replay store must
    /// remember a request at least this long.
    #[must_use]
    pub fn acceptance_window(&self) -> Option<Duration> {
        (!self.ttl.is_zero()).then(|| self.ttl + self.future_skew)
    }

    /// How many secrets this verifier accepts.
    #[must_use]
    pub fn secret_count(&self) -> usize {
        self.secrets.len()
    }

    /// Verifies a request as it arrived.
    ///
    /// `target` is the raw request target: path and query exactly as received. `body` is the raw
    /// body; an absent body is an empty one. `now` is the current time.
    ///
    /// # Errors
    /// An [`Error`] whose [`kind`](Error::kind) says why the request is rejected.
    pub fn verify(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedRequest, Error> {
        self.verify_with_prefix(method, target, headers, body, now, None)
    }

    /// [`verify`](Self::verify), with a path prefix learned from this request (for instance
    /// from `X-Forwarded-Prefix` sent by a trusted proxy). It replaces the configured prefix.
    ///
    /// # Errors
    /// As [`verify`](Self::verify); a prefix that is not of the form `/segment[/segment...]` is
    /// ignored.
    pub fn verify_with_prefix(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
        prefix: Option<&str>,
    ) -> Result<VerifiedRequest, Error> {
        if target
            .split_once('?')
            .is_some_and(|(_, query)| query.contains('?'))
        {
            return Err(Error::new(
                ErrorKind::UnsignedTarget,
                "the request target has a second `?`; what follows it is not signed",
            ));
        }
        let received = Received::read(headers);
        let expected = parse_signature(received.signature.as_ref())?;
        let timestamp_ms = parse_timestamp(received.timestamp.as_ref())?;
        let list = received.list.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::MissingSignedHeaders,
                "the request has no x-contentful-signed-headers header",
            )
        })?;
        // The names are compared with the request's (ASCII) header names only; the head writes
        // its own list.
        let list: Cow<'_, [u8]> = match list.ascii_trimmed() {
            Some(bytes) => Cow::Borrowed(bytes),
            None => Cow::Owned(list.text().into_owned().into_bytes()),
        };
        let mut listed = split_list(&list);
        if listed.len() > MAX_SIGNED_HEADERS {
            return Err(Error::new(
                ErrorKind::TooManySignedHeaders,
                format!(
                    "x-contentful-signed-headers lists {} names; at most {MAX_SIGNED_HEADERS} are accepted",
                    listed.len()
                ),
            ));
        }
        // Sorted, so that each request header is looked up in it by bisection.
        listed.sort_unstable();
        if listed.len() < 2 {
            return Err(Error::new(
                ErrorKind::MissingSignedHeaders,
                "x-contentful-signed-headers must list at least itself and x-contentful-timestamp",
            ));
        }
        self.check_freshness(timestamp_ms, unix_millis(now))?;

        let prefix = prefix
            .and_then(|p| validate_path_prefix(p).ok())
            .or(self.path_prefix.as_deref())
            .unwrap_or_default();
        let mut pairs = received.pick(&listed);
        if let Some(name) = boundary_mover(&pairs, |name| listed.binary_search(&name).is_ok()) {
            return Err(ambiguous(name));
        }
        let head = Head::new(method.as_str(), prefix, target, &mut pairs, timestamp_ms);
        if let Some((space, crn)) = conflicting_spaces(&head) {
            return Err(Error::new(
                ErrorKind::ContextConflict,
                format!(
                    "the signed x-contentful-space-id ({space}) and the space of the signed \
                     x-contentful-crn ({crn}) differ"
                ),
            ));
        }
        let tenant = tenant_of(&head);
        let secret_index = self
            .secrets
            .iter()
            .position(|secret| {
                secret.key.serves(tenant)
                    && constant_time_eq(&head.mac(secret.key.secret.key(), body), &expected)
            })
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::SignatureMismatch,
                    format!(
                        "the signature matches none of the {} configured secret(s) for this method, path, \
                         signed headers, body and space",
                        self.secrets.len()
                    ),
                )
            })?;
        let kind = if self.secrets[secret_index].webhook {
            RequestKind::Webhook
        } else if head.entries().any(|(name, _)| name == USER_ID) {
            RequestKind::Frontend
        } else {
            RequestKind::App
        };
        if !self.kinds.contains(kind) {
            return Err(Error::new(
                ErrorKind::KindNotAllowed,
                format!(
                    "the request is authentic, but {}; this route takes {:?}",
                    match kind {
                        RequestKind::Frontend =>
                            "a user had it signed through the app frontend (it signs x-contentful-user-id)",
                        RequestKind::App => "it is an app event or action",
                        RequestKind::Webhook => "it is a webhook",
                    },
                    self.kinds
                ),
            ));
        }
        Ok(VerifiedRequest {
            secret_index,
            timestamp_ms,
            head,
            signature: expected,
            kind,
            namespace: self.namespace.clone(),
        })
    }

    /// The entry point: verifies a request as it arrived. `parts` are its method, raw target
    /// and headers, `body` its body buffered whole, `peer` the socket peer (which decides
    /// whether [`FORWARDED_PREFIX`] is trusted, see
    /// [`with_forwarded_prefix`](Self::with_forwarded_prefix)). The verdict holds the verified
    /// facts, the body, the delivery's identity and window, and its space.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use countersign_core::contentful::{self, Context, RequestToSign, SigningSecret, Verifier};
    /// use http::Method;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let secret = SigningSecret::new("a".repeat(64))?;
    /// let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let context = Context { space_id: Some("space-1".into()), ..Context::default() };
    /// let signed = contentful::sign(&secret, &RequestToSign::new(Method::POST, "/hooks").with_body(b"{}"), at, &context)?;
    /// let mut request = http::Request::post("/hooks").body(())?;
    /// *request.headers_mut() = signed.to_header_map()?;
    /// let (parts, ()) = request.into_parts();
    ///
    /// let verdict = Verifier::new(secret).verify_request(&parts, "{}".into(), None, at)?;
    /// assert_eq!(verdict.tenant(), Some("space-1"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`verify`](Self::verify).
    pub fn verify_request(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        peer: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<Verdict<VerifiedRequest>, Error> {
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let forwarded = peer
            .zip(self.prefix_proxies.as_deref())
            .filter(|(peer, proxies)| proxies.contains(*peer))
            .and_then(|_| forwarded_prefix(&parts.headers));
        let verified =
            self.verify_with_prefix(&parts.method, target, &parts.headers, &body, now, forwarded)?;
        Ok(Verdict::new(verified, body, self.acceptance_window()))
    }

    fn check_freshness(&self, timestamp_ms: u64, now_ms: u64) -> Result<(), Error> {
        let age_ms = i128::from(now_ms) - i128::from(timestamp_ms);
        let ttl_ms = i128::try_from(self.ttl.as_millis()).unwrap_or(i128::MAX);
        if ttl_ms > 0 && age_ms >= ttl_ms {
            return Err(Error::new(
                ErrorKind::Expired,
                format!(
                    "signed {} s ago; signatures are accepted for {} s (is this machine's clock right?)",
                    seconds(age_ms),
                    seconds(ttl_ms)
                ),
            ));
        }
        let skew_ms = i128::try_from(self.future_skew.as_millis()).unwrap_or(i128::MAX);
        if -age_ms > skew_ms {
            return Err(Error::new(
                ErrorKind::TimestampInFuture,
                format!(
                    "signed {} s in the future; at most {} s of clock skew is accepted",
                    seconds(-age_ms),
                    seconds(skew_ms)
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "secrets",
                &format_args!("<{} redacted>", self.secrets.len()),
            )
            .field("kinds", &self.kinds)
            .field("namespace", &self.namespace)
            .field("ttl", &self.ttl)
            .field("future_skew", &self.future_skew)
            .field("path_prefix", &self.path_prefix)
            .field("prefix_proxies", &self.prefix_proxies.is_some())
            .finish()
    }
}

/// A request whose signature verified: what it proved.
///
/// Only signed headers appear here; an unsigned `x-contentful-space-id` is not evidence of
/// anything and is left out.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    secret_index: usize,
    timestamp_ms: u64,
    /// The canonical head that verified, which holds the signed headers.
    head: Head,
    signature: [u8; HMAC_SHA256_LEN],
    kind: RequestKind,
    /// The verifier's namespace: the replay key is derived when asked for, so that a
    /// verification without a replay guard does not pay for it.
    namespace: Option<Arc<str>>,
}

/// The signed headers, but never a credential's value (the signature is not shown at all).
impl fmt::Debug for VerifiedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signed: Vec<(&str, &str)> = self
            .signed_headers()
            .map(|(name, value)| {
                let sensitive = crate::SENSITIVE_HEADERS.contains(&name);
                (name, if sensitive { "<redacted>" } else { value })
            })
            .collect();
        f.debug_struct("VerifiedRequest")
            .field("kind", &self.kind)
            .field("secret_index", &self.secret_index)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("signed", &signed)
            .finish_non_exhaustive()
    }
}

impl VerifiedRequest {
    /// What kind of request this is: frontend-signed for a user, an app event or action, or a
    /// webhook.
    #[must_use]
    pub fn kind(&self) -> RequestKind {
        self.kind
    }

    /// The tenant: the signed space id, or where only a CRN is signed, the CRN's space.
    #[must_use]
    pub fn tenant(&self) -> Option<&str> {
        tenant_of(&self.head)
    }

    /// Which configured secret matched, counting from 0 in the order they were added.
    #[must_use]
    pub fn secret_index(&self) -> usize {
        self.secret_index
    }

    /// When the request was signed.
    #[must_use]
    pub fn timestamp(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.timestamp_ms)
    }

    /// When the request was signed, in Unix milliseconds, as sent.
    #[must_use]
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The value of a signed header, by lower-case name (trimmed; repeated headers joined by
    /// `", "`).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.signed_headers()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value)
    }

    /// Every signed header but the signature, the list and the timestamp, by name (lower
    /// case), sorted.
    pub fn signed_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.head.entries().filter(|(name, _)| *name != SIGNATURE)
    }

    /// The signed space id.
    #[must_use]
    pub fn space_id(&self) -> Option<&str> {
        self.header(SPACE_ID)
    }

    /// The signed environment id.
    #[must_use]
    pub fn environment_id(&self) -> Option<&str> {
        self.header(ENVIRONMENT_ID)
    }

    /// The signed user id (present on frontend-signed requests).
    #[must_use]
    pub fn user_id(&self) -> Option<&str> {
        self.header(USER_ID)
    }

    /// The signed app id.
    #[must_use]
    pub fn app_id(&self) -> Option<&str> {
        self.header(APP_ID)
    }

    /// The signed CRN of the request.
    #[must_use]
    pub fn crn(&self) -> Option<&str> {
        self.header(CRN)
    }

    /// The signed topic of a webhook or app event, typed: `ContentManagement.Entry.publish`
    /// is [`Entity::Entry`](super::Entity::Entry) and [`Action::Publish`](super::Action::Publish).
    /// `None` when the request does not sign `x-contentful-topic`: an unsigned header is not
    /// evidence.
    #[must_use]
    pub fn topic(&self) -> Option<super::Topic> {
        self.header(TOPIC).map(super::Topic::parse)
    }

    /// The signed idempotency key of a webhook delivery (the same for each retry).
    #[must_use]
    pub fn idempotency_key(&self) -> Option<&str> {
        self.header(IDEMPOTENCY_KEY)
    }

    /// What identifies this delivery (replay protection, idempotent writes): the signed
    /// idempotency key when there is one (the same for every retry), else the verified HMAC,
    /// a function of the signed message; scoped to the namespace (the app), the space and the
    /// kind. The rules are in [`crate::replay`].
    #[must_use]
    pub fn replay_key(&self) -> ReplayKey {
        let scope = Scope {
            namespace: self.namespace.as_deref(),
            tenant: self.tenant(),
        };
        let kind = self.kind.as_str();
        match self.idempotency_key() {
            Some(key) => ReplayKey::contentful_idempotency_key(scope, kind, key),
            None => ReplayKey::contentful_message(scope, kind, &self.signature),
        }
    }

    /// The signed context headers.
    #[must_use]
    pub fn context(&self) -> Context {
        let owned = |v: Option<&str>| v.map(str::to_owned);
        Context {
            space_id: owned(self.space_id()),
            environment_id: owned(self.environment_id()),
            app_id: owned(self.app_id()),
            user_id: owned(self.user_id()),
            crn: owned(self.crn()),
        }
    }
}

/// The value(s) of one header name, read lazily: most headers of a request are not looked at.
enum Raw<'a> {
    One(&'a http::HeaderValue),
    /// Repeated values, joined by `", "` as Node.js joins them.
    Joined(String),
}

impl<'a> Raw<'a> {
    /// The text as Node.js hands it to the toolkit: trimmed, and borrowed from the request in
    /// the usual case of one UTF-8 value.
    fn text(&self) -> Text<'a> {
        match self {
            // Visible ASCII, the usual case: of JavaScript's white space only spaces and tabs
            // can be in it.
            Self::One(value) => match value.to_str() {
                Ok(text) => Cow::Borrowed(text.trim_matches([' ', '\t'])),
                Err(_) => match js::header_text(value.as_bytes()) {
                    Cow::Borrowed(text) => Cow::Borrowed(js::trim(text)),
                    Cow::Owned(text) => Cow::Owned(js::trim(&text).to_owned()),
                },
            },
            Self::Joined(joined) => Cow::Owned(js::trim(joined).to_owned()),
        }
    }
}

impl<'a> Raw<'a> {
    /// The value's bytes trimmed of spaces and tabs, when that is exactly what JavaScript's
    /// trim gives: one value whose ends, once trimmed, are ASCII (a header value holds no other
    /// ASCII white space, and JavaScript's other white space is never ASCII). What the protocol
    /// headers are read from without building text.
    fn ascii_trimmed(&self) -> Option<&'a [u8]> {
        let Self::One(value) = self else {
            return None;
        };
        let trimmed = value.as_bytes().trim_ascii();
        let ascii = |end: Option<&u8>| end.is_none_or(u8::is_ascii);
        (ascii(trimmed.first()) && ascii(trimmed.last())).then_some(trimmed)
    }
}

/// The request's headers, each name once with its value(s), read in one pass over the map
/// (whose repeated values of a name come one after another): the three of the signing
/// protocol apart, the others inline for the usual dozen.
struct Received<'a> {
    signature: Option<Raw<'a>>,
    timestamp: Option<Raw<'a>>,
    list: Option<Raw<'a>>,
    others: SmallVec<[(&'a str, Raw<'a>); 12]>,
}

impl<'a> Received<'a> {
    fn read(headers: &'a HeaderMap) -> Self {
        let mut received = Self {
            signature: None,
            timestamp: None,
            list: None,
            others: SmallVec::new(),
        };
        let mut all = headers.iter().peekable();
        while let Some((name, first)) = all.next() {
            let raw = match all.next_if(|(next, _)| *next == name) {
                None => Raw::One(first),
                Some((_, second)) => {
                    let mut joined = js::header_text(first.as_bytes()).into_owned();
                    let mut next = Some(second);
                    while let Some(value) = next {
                        joined.push_str(", ");
                        joined.push_str(&js::header_text(value.as_bytes()));
                        next = all.next_if(|(n, _)| *n == name).map(|(_, value)| value);
                    }
                    Raw::Joined(joined)
                }
            };
            match name.as_str() {
                SIGNATURE => received.signature = Some(raw),
                TIMESTAMP => received.timestamp = Some(raw),
                SIGNED_HEADERS => received.list = Some(raw),
                other => received.others.push((other, raw)),
            }
        }
        received
    }

    /// The headers whose names are in the signed list, exactly as listed (a listed name in
    /// another case, or with spaces, matches nothing), with their texts. The list and the
    /// timestamp are the head's own entries, never taken from here; the signature is taken
    /// when listed. `listed` is sorted.
    fn pick(&self, listed: &[&[u8]]) -> Pairs<'a> {
        let signature = self
            .signature
            .as_ref()
            .filter(|_| listed.binary_search(&SIGNATURE.as_bytes()).is_ok())
            .map(|raw| (SIGNATURE, raw));
        self.others
            .iter()
            .filter(|(name, _)| listed.binary_search(&name.as_bytes()).is_ok())
            .map(|(name, raw)| (*name, raw))
            .chain(signature)
            .map(|(name, raw)| (Cow::Borrowed(name), raw.text()))
            .collect()
    }
}

/// The prefix a trusted proxy stated: the last [`FORWARDED_PREFIX`] value, and of a
/// comma-separated one the last element. A proxy appends its own after whatever the client
/// sent, so the first would be the client's.
fn forwarded_prefix(headers: &HeaderMap) -> Option<&str> {
    let last = headers.get_all(FORWARDED_PREFIX).iter().next_back()?;
    last.to_str().ok()?.rsplit(',').next().map(str::trim)
}

/// The names of a signed-header list: split at every comma, nothing trimmed (as the toolkit
/// splits it).
fn split_list(list: &[u8]) -> SmallVec<[&[u8]; 8]> {
    let mut names = SmallVec::new();
    let mut start = 0;
    for comma in memchr::memchr_iter(b',', list) {
        names.push(&list[start..comma]);
        start = comma + 1;
    }
    names.push(&list[start..]);
    names
}

fn parse_signature(raw: Option<&Raw<'_>>) -> Result<[u8; HMAC_SHA256_LEN], Error> {
    let raw = raw.ok_or_else(|| {
        Error::new(
            ErrorKind::MissingSignature,
            "the request has no x-contentful-signature header",
        )
    })?;
    if let Some(signature) = raw.ascii_trimmed().and_then(decode_lower_hex) {
        return Ok(signature);
    }
    let text = raw.text();
    decode_lower_hex(text.as_bytes()).ok_or_else(|| {
        Error::new(
            ErrorKind::MalformedSignature,
            format!(
                "x-contentful-signature must be 64 lower-case hex characters; it has {} characters",
                text.chars().count()
            ),
        )
    })
}

/// 64 lower-case hex digits (what the toolkit sends), decoded; anything else is `None`.
///
/// Arithmetic rather than a table, and without early exits, so that the compiler decodes many
/// digits per instruction.
fn decode_lower_hex(text: &[u8]) -> Option<[u8; HMAC_SHA256_LEN]> {
    /// Whether `c` is `0`-`9` or `a`-`f`.
    const fn is_digit(c: u8) -> bool {
        (c.wrapping_sub(b'0') < 10) | (c.wrapping_sub(b'a') < 6)
    }
    /// The value of a digit: `0`-`9` are 0x30-0x39, `a`-`f` are 0x61-0x66 (bit 6 set).
    const fn value(c: u8) -> u8 {
        (c & 0x0f) + 9 * (c >> 6)
    }
    let digits: &[u8; 2 * HMAC_SHA256_LEN] = text.try_into().ok()?;
    let mut out = [0u8; HMAC_SHA256_LEN];
    let mut valid = true;
    for (byte, &[high, low]) in out.iter_mut().zip(digits.as_chunks::<2>().0) {
        valid &= is_digit(high) & is_digit(low);
        *byte = (value(high) << 4) | value(low);
    }
    valid.then_some(out)
}

fn parse_timestamp(raw: Option<&Raw<'_>>) -> Result<u64, Error> {
    let raw = raw.ok_or_else(|| {
        Error::new(
            ErrorKind::MissingTimestamp,
            "the request has no x-contentful-timestamp header",
        )
    })?;
    let malformed = |why: &str| {
        Error::new(
            ErrorKind::MalformedTimestamp,
            format!("x-contentful-timestamp must be Unix milliseconds after 2020-01-01; {why}"),
        )
    };
    let text: Cow<'_, [u8]> = match raw.ascii_trimmed() {
        Some(bytes) => Cow::Borrowed(bytes),
        None => Cow::Owned(raw.text().into_owned().into_bytes()),
    };
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(malformed("it is not a decimal number"));
    }
    let ms = text
        .iter()
        .try_fold(0u64, |ms, digit| {
            ms.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .ok_or_else(|| malformed("it is too large"))?;
    if ms <= EARLIEST_TIMESTAMP_MS {
        return Err(malformed(
            "it is earlier (seconds instead of milliseconds?)",
        ));
    }
    Ok(ms)
}

fn validate_path_prefix(prefix: &str) -> Result<&str, ConfigError> {
    let valid = prefix.starts_with('/')
        && prefix.len() > 1
        && !prefix.ends_with('/')
        && !prefix.contains(['?', '#'])
        && !prefix.chars().any(char::is_control);
    if valid {
        Ok(prefix)
    } else {
        Err(ConfigError::new(
            ConfigErrorKind::InvalidPathPrefix,
            "a path prefix starts with `/`, does not end with `/`, and holds no `?`, `#` or control character",
        ))
    }
}

/// Milliseconds as seconds with one decimal, for messages.
fn seconds(ms: i128) -> String {
    format!("{}.{}", ms / 1000, (ms % 1000).abs() / 100)
}

impl crate::verdict::Facts for VerifiedRequest {
    fn replay_key(&self) -> ReplayKey {
        VerifiedRequest::replay_key(self)
    }

    fn tenant(&self) -> Option<&str> {
        VerifiedRequest::tenant(self)
    }
}

/// The space a head signs: `x-contentful-space-id`, else the `spaces/<id>` of
/// `x-contentful-crn`.
fn tenant_of(head: &Head) -> Option<&str> {
    let mut space = None;
    let mut crn = None;
    for (name, value) in head.entries() {
        match name {
            SPACE_ID => space = Some(value),
            CRN => crn = Some(value),
            _ => {}
        }
    }
    space.or_else(|| crn.and_then(crn_space))
}

/// The signed space id and the signed CRN's space, when both are signed and differ.
fn conflicting_spaces(head: &Head) -> Option<(&str, &str)> {
    let value = |wanted: &str| {
        head.entries()
            .find(|(name, _)| *name == wanted)
            .map(|(_, value)| value)
    };
    let space = value(SPACE_ID)?;
    let crn = value(CRN).and_then(crn_space)?;
    (space != crn).then_some((space, crn))
}

/// The space of a CRN such as `crn:contentful:::content:spaces/abc/environments/master`.
/// Only the form Contentful writes is read: `crn:contentful:<region>:<account>:<service>:` and
/// a resource path that starts with `spaces/<id>`; anything else names no space.
fn crn_space(crn: &str) -> Option<&str> {
    let mut parts = crn.splitn(6, ':');
    let (Some("crn"), Some("contentful")) = (parts.next(), parts.next()) else {
        return None;
    };
    let resource = parts.nth(3)?;
    let space = resource.strip_prefix("spaces/")?;
    let space = space.split_once('/').map_or(space, |(space, _)| space);
    (!space.is_empty()).then_some(space)
}

#[cfg(test)]
mod tests {
    use super::{crn_space, decode_lower_hex, split_list};

    #[test]
    fn the_space_of_a_crn_is_the_segment_after_spaces() {
        assert_eq!(
            crn_space("crn:contentful:::content:spaces/abc/environments/master/entries/e1"),
            Some("abc")
        );
        assert_eq!(
            crn_space("crn:contentful:::content:spaces/abc"),
            Some("abc")
        );
        assert_eq!(crn_space("crn:contentful:::content:spaces/"), None);
        assert_eq!(crn_space("crn:contentful:::content:organizations/o1"), None);
        assert_eq!(
            crn_space("crn:contentful:::content:organizations/o1/spaces/abc"),
            None,
            "a space further in is not the CRN's space"
        );
        assert_eq!(crn_space("crn:other:::content:spaces/abc"), None);
        assert_eq!(crn_space("spaces/abc"), None);
    }

    #[test]
    fn the_list_splits_at_every_comma_as_javascript_splits_it() {
        for list in [
            "",
            "a",
            "a,b",
            ",a,,b,",
            " a , b ",
            "x-contentful-timestamp,content-type",
        ] {
            let expected: Vec<&[u8]> = list.split(',').map(str::as_bytes).collect();
            assert_eq!(split_list(list.as_bytes()).to_vec(), expected, "{list:?}");
        }
    }

    #[test]
    fn hex_digits_decode_exactly_when_lower_case_hex() {
        let reference = hex::encode((0..32u8).map(|b| b.wrapping_mul(37)).collect::<Vec<_>>());
        assert_eq!(
            decode_lower_hex(reference.as_bytes()).map(Vec::from),
            hex::decode(&reference).ok()
        );
        // Every byte value, at an even and an odd position.
        for c in 0..=255u8 {
            for at in [0, 63] {
                let mut text = reference.clone().into_bytes();
                text[at] = c;
                let expected = (c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
                    .then(|| hex::decode(&text).unwrap());
                assert_eq!(
                    decode_lower_hex(&text).map(Vec::from),
                    expected,
                    "{c:#04x} at {at}"
                );
            }
        }
        for len in [0, 62, 63, 65, 66, 128] {
            assert_eq!(decode_lower_hex(&vec![b'a'; len]), None, "{len} digits");
        }
    }
}
