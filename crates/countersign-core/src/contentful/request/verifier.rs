//! [`RequestVerifier`]: the settings, the entry point, and the checks in order.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method};

use super::received::{Listed, Received, parse_signature, parse_timestamp};
use super::verified::{SignedSpaces, VerifiedRequest};
use super::{DEFAULT_FUTURE_SKEW, DEFAULT_TTL, FORWARDED_PREFIX};
use crate::bound::Bound;
use crate::contentful::canonical::{Head, Pairs, boundary_mover, split_at_question_mark};
use crate::contentful::sign::{ambiguous, unix_millis};
use crate::contentful::{
    Error, ErrorKind, MAX_SIGNED_HEADERS, RequestKind, RequestKinds, SigningSecret, USER_ID,
};
use crate::crypto::constant_time_eq;
use crate::error::{ConfigError, ConfigErrorKind};
use crate::freshness::{Outside, Window};
use crate::ip::IpAllowlist;
use crate::verdict::Verdict;

/// Verifies signed Contentful requests against one or more signing secrets.
///
/// Defaults: a time-to-live of [`DEFAULT_TTL`], a future skew of [`DEFAULT_FUTURE_SKEW`], no
/// path prefix, every [kind](RequestKind) of request, no replay namespace
/// ([`with_namespace`](Self::with_namespace)). Cheap to clone and to share between threads.
///
/// A backend calls [`verify`](Self::verify) (the `countersign` crate's layer does); the
/// [`diagnose`](Self::diagnose) runs its checks on a request given as parts, for
/// diagnosis and tests.
#[derive(Clone)]
pub struct RequestVerifier {
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

impl RequestVerifier {
    /// A verifier for requests signed with `secret`, the app's signing secret (app events, app
    /// actions, frontend-signed requests).
    #[must_use]
    pub fn new(secret: SigningSecret) -> Self {
        Self::with_first(Secret {
            key: Bound::any(secret),
            webhook: false,
        })
    }

    /// A verifier of `first` alone, with the defaults.
    fn with_first(first: Secret) -> Self {
        Self {
            secrets: vec![first],
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
        Self::with_first(Secret {
            key: Bound::to(space_id.into(), secret),
            webhook: true,
        })
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
        self.ttl = ttl.min(crate::freshness::MAX_WINDOW);
        self
    }

    /// How far ahead of this machine's clock a timestamp may be (clocks differ). The toolkit
    /// accepts any future timestamp; we do not.
    #[must_use]
    pub fn with_future_skew(mut self, skew: Duration) -> Self {
        self.future_skew = skew.min(crate::freshness::MAX_WINDOW);
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
    /// peer is one of `proxies` ([`verify`](Self::verify)); it replaces the
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

    /// The checks of [`verify`](Self::verify) on a request given as its parts, under `prefix`
    /// when one is given (else the configured one): [`diagnose`](Self::diagnose).
    pub(crate) fn check_parts(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
        prefix: Option<&str>,
    ) -> Result<VerifiedRequest, Error> {
        self.check_parts_into(method, target, headers, body, now, prefix, |verified, _| {
            verified
        })
    }

    /// [`check_parts`](Self::check_parts), with what it proved and the body handed to
    /// `finish`: the verified request is written once, straight into what `finish` makes of
    /// it, instead of moved from one frame to the next.
    #[expect(
        clippy::too_many_arguments,
        reason = "check_parts's, and the one to finish"
    )]
    fn check_parts_into<B: AsRef<[u8]>, T>(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: B,
        now: SystemTime,
        prefix: Option<&str>,
        finish: impl FnOnce(VerifiedRequest, B) -> T,
    ) -> Result<T, Error> {
        let prefix = prefix
            .and_then(|p| validate_path_prefix(p).ok())
            .or(self.path_prefix.as_deref())
            .unwrap_or_default();
        // What the signature will prove, written once: it is then completed, not moved.
        let mut verified = signed_head(method, target, headers, prefix, |timestamp_ms| {
            self.check_freshness(timestamp_ms, unix_millis(now))
        })?;
        let head = &verified.head;
        let tenant = signed_tenant(head)?;
        let secret_index = self
            .secrets
            .iter()
            .position(|secret| {
                secret.key.serves(tenant)
                    && constant_time_eq(
                        &head.mac(secret.key.secret.key(), body.as_ref()),
                        &verified.signature,
                    )
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
        verified.secret_index = secret_index;
        verified.kind = kind;
        verified.namespace.clone_from(&self.namespace);
        Ok(finish(verified, body))
    }

    /// The entry point: verifies a request as it arrived. `parts` are its method, raw target
    /// and headers, `body` its body buffered whole, `peer` the socket peer (which decides
    /// whether [`FORWARDED_PREFIX`] is trusted, see
    /// [`with_forwarded_prefix`](Self::with_forwarded_prefix)). The verdict holds the verified
    /// facts, the body, the delivery's identity and window, and its space.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use countersign_core::contentful::{self, Context, RequestToSign, SigningSecret, RequestVerifier};
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
    /// let verdict = RequestVerifier::new(secret).verify(&parts, "{}".into(), None, at)?;
    /// assert_eq!(verdict.tenant(), Some("space-1"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// An [`Error`] whose [`kind`](Error::kind) says why the request is rejected.
    pub fn verify(
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
        let window = self.acceptance_window();
        self.check_parts_into(
            &parts.method,
            target,
            &parts.headers,
            body,
            now,
            forwarded,
            |verified, body| Verdict::new(verified, body, window),
        )
    }

    /// The toolkit's rule, in its milliseconds: expired at an age of the TTL (`>=`), unless
    /// the TTL is 0 (off).
    fn check_freshness(&self, timestamp_ms: u64, now_ms: u64) -> Result<(), Error> {
        let whole_millis =
            |d: Duration| Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let window = Window {
            max_age: (!self.ttl.is_zero()).then(|| whole_millis(self.ttl)),
            expired_at_limit: true,
            future_skew: whole_millis(self.future_skew),
        };
        window
            .check_unix_millis(timestamp_ms, now_ms)
            .map_err(|outside| match outside {
            Outside::Expired { age, max_age } => Error::new(
                ErrorKind::Expired,
                format!(
                    "signed {} s ago; signatures are accepted for {} s (is this machine's clock right?)",
                    seconds(age),
                    seconds(max_age)
                ),
            ),
            Outside::Ahead { ahead, skew } => Error::new(
                ErrorKind::TimestampInFuture,
                format!(
                    "signed {} s in the future; at most {} s of clock skew is accepted",
                    seconds(ahead),
                    seconds(skew)
                ),
            ),
        })
    }
}

/// What the live path makes of a webhook request that Contentful's own record holds (the
/// webhook's call details, read from the Content Management API): the same signed headers,
/// tenant and [replay key](VerifiedRequest::replay_key) as [`RequestVerifier::verify`] gives the
/// request when it arrives, in `namespace` (the verifier's
/// [`with_namespace`](RequestVerifier::with_namespace)).
///
/// The signature is read but not checked, and the time is not: the record came from
/// Contentful over an authenticated TLS call, so it is Contentful's own word, as a signature
/// is. Every other refusal of [`verify`](RequestVerifier::verify) applies: a target with a
/// second `?`, a missing or malformed signature, list or timestamp, a signed value that moves
/// a boundary, a space id and CRN that differ.
///
/// # Errors
/// An [`Error`] whose [`kind`](Error::kind) says which of those refusals it is.
pub fn recorded_webhook(
    namespace: Option<&str>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
) -> Result<VerifiedRequest, Error> {
    let mut verified = signed_head(method, target, headers, "", |_| Ok(()))?;
    signed_tenant(&verified.head)?;
    verified.namespace = namespace.map(Arc::from);
    Ok(verified)
}

/// The signed head of a request, its signature and its timestamp, read as the toolkit reads
/// them and refused as [`RequestVerifier::verify`] refuses them (but for the signature itself):
/// what the live path and a provider's record of a request share. `fresh` checks the
/// timestamp before the head is built.
///
/// What it returns is not verified yet: the caller refuses a space id and a CRN that differ
/// ([`signed_tenant`]), checks the signature where it has a secret, and sets the kind, the
/// secret's index and the namespace. It never leaves this module otherwise.
fn signed_head(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    prefix: &str,
    fresh: impl FnOnce(u64) -> Result<(), Error>,
) -> Result<VerifiedRequest, Error> {
    if split_at_question_mark(target).is_some_and(|(_, query)| query.as_bytes().contains(&b'?')) {
        return Err(Error::new(
            ErrorKind::UnsignedTarget,
            "the request target has a second `?`; what follows it is not signed",
        ));
    }
    let mut received = Received::new();
    received.read(headers);
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
    let mut listed = Listed::new();
    let names = listed.split(&list, MAX_SIGNED_HEADERS);
    if names > MAX_SIGNED_HEADERS {
        return Err(Error::new(
            ErrorKind::TooManySignedHeaders,
            format!(
                "x-contentful-signed-headers lists {names} names; at most {MAX_SIGNED_HEADERS} are accepted"
            ),
        ));
    }
    listed.index();
    if listed.len() < 2 {
        return Err(Error::new(
            ErrorKind::MissingSignedHeaders,
            "x-contentful-signed-headers must list at least itself and x-contentful-timestamp",
        ));
    }
    fresh(timestamp_ms)?;

    let mut pairs = Pairs::new();
    received.pick(&listed, &mut pairs);
    if let Some(name) = boundary_mover(&pairs, |name| listed.contains(name)) {
        return Err(ambiguous(name));
    }
    let head = Head::new(method.as_str(), prefix, target, &mut pairs, timestamp_ms);
    Ok(VerifiedRequest {
        secret_index: 0,
        timestamp_ms,
        head,
        signature: expected,
        kind: RequestKind::Webhook,
        namespace: None,
    })
}

/// The space a signed head is for, refused when its space id and its CRN's space differ.
fn signed_tenant(head: &Head) -> Result<Option<&str>, Error> {
    let spaces = SignedSpaces::read(head);
    if let Some((space, crn)) = spaces.conflict() {
        return Err(Error::new(
            ErrorKind::ContextConflict,
            format!(
                "the signed x-contentful-space-id ({space}) and the space of the signed \
                     x-contentful-crn ({crn}) differ"
            ),
        ));
    }
    Ok(spaces.tenant())
}

impl fmt::Debug for RequestVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestVerifier")
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

/// The prefix a trusted proxy stated: the last [`FORWARDED_PREFIX`] value, and of a
/// comma-separated one the last element. A proxy appends its own after whatever the client
/// sent, so the first would be the client's.
fn forwarded_prefix(headers: &HeaderMap) -> Option<&str> {
    let last = headers.get_all(FORWARDED_PREFIX).iter().next_back()?;
    last.to_str().ok()?.rsplit(',').next().map(str::trim)
}

/// Checks a path prefix ([`RequestVerifier::with_path_prefix`], and the stage or base path of
/// an AWS Lambda function): it starts with `/`, does not end with `/`, and holds no `?`, `#` or
/// control character.
///
/// # Errors
/// [`ConfigErrorKind::InvalidPathPrefix`] otherwise.
pub fn validate_path_prefix(prefix: &str) -> Result<&str, ConfigError> {
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

/// A duration in seconds with one decimal, for messages.
fn seconds(duration: Duration) -> String {
    format!("{}.{}", duration.as_secs(), duration.subsec_millis() / 100)
}
