//! `signRequest`: what Contentful does before it sends a request.

use std::borrow::Cow;
use std::time::SystemTime;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};

use super::canonical::{Head, Pairs, boundary_mover, normalize_header};
use super::{
    APP_ID, CRN, ENVIRONMENT_ID, Error, ErrorKind, SIGNATURE, SIGNED_HEADERS, SPACE_ID,
    SigningSecret, TIMESTAMP, USER_ID,
};
use crate::js;

/// A request about to be signed: method, path (with its query), headers to cover, body.
///
/// ```
/// use countersign_core::contentful::RequestToSign;
/// use http::Method;
///
/// let request = RequestToSign::new(Method::POST, "/actions/sync?dry=1")
///     .with_header("Content-Type", "application/json")
///     .with_body(br#"{"entry":"42"}"#);
/// ```
#[derive(Debug, Clone)]
pub struct RequestToSign<'a> {
    method: Method,
    path: &'a str,
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

impl<'a> RequestToSign<'a> {
    /// A request with no headers to cover and an empty body.
    ///
    /// `path` is the request target without scheme and host, starting with `/`. The toolkit
    /// signs only GET, PATCH, HEAD, POST, DELETE, OPTIONS and PUT
    /// ([`SIGNABLE_METHODS`](super::SIGNABLE_METHODS)); other methods are signed the same way.
    #[must_use]
    pub fn new(method: Method, path: &'a str) -> Self {
        Self {
            method,
            path,
            headers: Vec::new(),
            body: b"",
        }
    }

    /// Covers a header. The name is lower-cased and trimmed, the value trimmed; a later header
    /// of the same name replaces an earlier one.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(normalize_header(name, value));
        self
    }

    /// The body, as the bytes that will be sent. Absent and empty sign the same.
    #[must_use]
    pub fn with_body(mut self, body: &'a [u8]) -> Self {
        self.body = body;
        self
    }
}

/// The context headers Contentful adds to app requests. Each one present is sent and signed,
/// and replaces a request header of the same name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// `x-contentful-space-id`.
    pub space_id: Option<String>,
    /// `x-contentful-environment-id`.
    pub environment_id: Option<String>,
    /// `x-contentful-app-id`.
    pub app_id: Option<String>,
    /// `x-contentful-user-id`.
    pub user_id: Option<String>,
    /// `x-contentful-crn`.
    pub crn: Option<String>,
}

impl Context {
    /// The context as `(header name, trimmed value)` pairs, in the order `signRequest` returns
    /// them.
    fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            (SPACE_ID, &self.space_id),
            (ENVIRONMENT_ID, &self.environment_id),
            (APP_ID, &self.app_id),
            (USER_ID, &self.user_id),
            (CRN, &self.crn),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, js::trim(v))))
    }
}

/// The headers to add to a signed request, in the order `signRequest` returns them:
/// signature, signed-headers list, timestamp, then the context headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    entries: Vec<(&'static str, String)>,
}

impl SignedHeaders {
    /// `(name, value)` pairs, names lower case.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.entries
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
    }

    /// The value of one header, by its lower-case name.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The value of `x-contentful-signature`.
    #[must_use]
    pub fn signature(&self) -> &str {
        self.get(SIGNATURE).unwrap_or_default()
    }

    /// The headers as a [`HeaderMap`], to merge into an outgoing request.
    ///
    /// # Errors
    /// When a context value cannot be a header value (it holds a control character).
    pub fn to_header_map(&self) -> Result<HeaderMap, http::header::InvalidHeaderValue> {
        let mut map = HeaderMap::with_capacity(self.entries.len());
        for (name, value) in self.iter() {
            map.insert(HeaderName::from_static(name), HeaderValue::from_str(value)?);
        }
        Ok(map)
    }
}

/// Signs a request as `@contentful/node-apps-toolkit`'s `signRequest(secret, request,
/// timestamp, context)` does, bit for bit. `timestamp` is taken in whole milliseconds.
///
/// Unlike the toolkit, it refuses a header value that could move a boundary of the canonical
/// string (`;` followed by a signed name and `:`): such a signature would also stand for
/// another set of headers, and every verifier here refuses it.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use countersign_core::contentful::{sign, Context, RequestToSign, SigningSecret};
/// use http::Method;
///
/// let secret = SigningSecret::new("a".repeat(64)).unwrap();
/// let at = UNIX_EPOCH + Duration::from_millis(1_603_379_941_037);
/// let headers = sign(&secret, &RequestToSign::new(Method::GET, "/api/resources/1"), at, &Context::default())?;
/// assert_eq!(headers.signature(), "3b21d63c31a2a92d38945394da0b1a2a0dc2d9bf13ef4dfd91b9f3fa1440b404");
/// assert_eq!(headers.get("x-contentful-timestamp"), Some("1603379941037"));
/// # Ok::<_, countersign_core::contentful::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::AmbiguousHeader`] when a header value holds `;` followed by a signed header's
/// name and `:`.
pub fn sign(
    secret: &SigningSecret,
    request: &RequestToSign<'_>,
    timestamp: SystemTime,
    context: &Context,
) -> Result<SignedHeaders, Error> {
    let timestamp_ms = unix_millis(timestamp);
    let mut pairs: Pairs<'_> = request
        .headers
        .iter()
        .map(|(n, v)| (Cow::Borrowed(n.as_str()), Cow::Borrowed(v.as_str())))
        .collect();
    pairs.extend(
        context
            .headers()
            .map(|(n, v)| (Cow::Borrowed(n), Cow::Borrowed(v))),
    );
    if let Some(name) = boundary_mover(&pairs, |name| {
        pairs.iter().any(|(signed, _)| signed.as_bytes() == name)
    }) {
        return Err(ambiguous(name));
    }
    let head = Head::new(
        request.method.as_str(),
        "",
        request.path,
        &mut pairs,
        timestamp_ms,
    );
    let mac = head.mac(secret.key(), request.body);

    let mut entries = vec![
        (SIGNATURE, hex::encode(mac)),
        (SIGNED_HEADERS, head.list().to_owned()),
        (TIMESTAMP, timestamp_ms.to_string()),
    ];
    entries.extend(context.headers().map(|(n, v)| (n, v.to_owned())));
    Ok(SignedHeaders { entries })
}

/// The refusal of a value that could move a boundary of the canonical string.
pub(super) fn ambiguous(name: &str) -> Error {
    Error::new(
        ErrorKind::AmbiguousHeader,
        format!(
            "the value of {name} holds `;` followed by a signed header's name and `:`, so the \
             signature could stand for another set of headers"
        ),
    )
}

/// Milliseconds since the Unix epoch; 0 for times before it.
pub(super) fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
