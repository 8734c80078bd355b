//! Rejections: a stable status and reason code per failure, answered as `application/problem+json`.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use countersign_core::credentials::CredentialError;
use countersign_core::reason::{self, Reason};
use countersign_core::{ReasonCode, Rejected};
use http::{HeaderName, HeaderValue, StatusCode, header};

/// What `Retry-After` says for a delivery in flight, or a store to try again, in seconds.
pub const RETRY_AFTER_SECS: u32 = 5;
/// Why a layer or an extractor refused a request.
///
/// The answer's body is `application/problem+json` with `type`, `title`, `status` and a stable
/// snake_case `code`; it never holds a secret, a key, a signature or the request body. The
/// [`message`](Rejection::message) has the detail for logs (`tracing`, target `countersign`),
/// and the rejection itself is attached to the answer's extensions for outer layers.
#[derive(Clone, PartialEq, Eq)]
pub struct Rejection {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rejection {
    /// A rejection for `reason` from the [catalogue](countersign_core::reason), with the
    /// detail for logs; with `Retry-After` when the reason asks for a retry.
    #[must_use]
    pub fn of(reason: &'static Reason, message: impl Into<String>) -> Self {
        let rejection = Self::new(reason.status, reason.code, reason.title, message);
        if reason.retry {
            rejection.retry_later()
        } else {
            rejection
        }
    }

    /// A rejection of your own (a handler's, outside the catalogue) with this status, code,
    /// title and detail.
    #[must_use]
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable reason code: `signature_mismatch`, `timestamp_expired`, `ip_not_allowed`, ...
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// A short title for people.
    #[must_use]
    pub fn title(&self) -> &'static str {
        self.title
    }

    /// The detail, for logs (never sent to the client by the default answer).
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Adds a header to the answer (kept with a custom answer too), such as a
    /// `WWW-Authenticate` challenge or `Cache-Control: no-store`.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn payload_too_large(limit: usize) -> Self {
        Self::of(
            &reason::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the limit of {limit} bytes"),
        )
    }

    pub(crate) fn body_timeout(after: std::time::Duration) -> Self {
        Self::of(
            &reason::BODY_TIMEOUT,
            format!("the body did not arrive within {} ms", after.as_millis()),
        )
    }

    pub(crate) fn body_unreadable(detail: impl fmt::Display) -> Self {
        Self::of(
            &reason::BODY_UNREADABLE,
            format!("reading the body failed: {detail}"),
        )
    }

    /// Adds `Retry-After` ([`RETRY_AFTER_SECS`]): the sender
    /// should come back, for the refusal is not its fault.
    pub(crate) fn retry_later(self) -> Self {
        self.with_header(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS))
    }

    /// The default answer: the status, `application/problem+json`, and the rejection's headers.
    #[must_use]
    pub fn to_response(&self) -> Response {
        let body = serde_json::json!({
            "type": format!("urn:countersign:problem:{}", self.code),
            "title": self.title,
            "status": self.status.as_u16(),
            "code": self.code,
        });
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        self.add_headers(&mut response);
        response
    }

    fn add_headers(&self, response: &mut Response) {
        for (name, value) in &self.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }

    /// Records the rejection as a `tracing` event (target `countersign`).
    pub(crate) fn log(&self, client: Option<IpAddr>) {
        let client = client.map(|ip| ip.to_string());
        let client = client.as_deref().unwrap_or("unknown");
        let (code, status, message) = (self.code, self.status.as_u16(), self.message.as_str());
        if self.status.is_server_error() {
            tracing::error!(target: "countersign", code, status, client, "request rejected: {message}");
        } else if matches!(
            self.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            tracing::warn!(target: "countersign", code, status, client, "request rejected: {message}");
        } else {
            tracing::info!(target: "countersign", code, status, client, "request rejected: {message}");
        }
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("status", &self.status.as_u16())
            .field("code", &self.code)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.status.as_u16(),
            self.message
        )
    }
}

impl std::error::Error for Rejection {}

/// Extractor rejections answer with the default response and are logged.
impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.log(None);
        let mut response = self.to_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl<K: ReasonCode> From<Rejected<K>> for Rejection {
    fn from(error: Rejected<K>) -> Self {
        Self::of(error.kind().reason(), error.message())
    }
}

impl From<CredentialError> for Rejection {
    fn from(error: CredentialError) -> Self {
        Self::of(error.reason(), format!("{error}"))
    }
}

/// Turns a rejection into the answer: the user's closure, or [`Rejection::to_response`].
pub(crate) type RespondFn = Arc<dyn Fn(&Rejection) -> Response + Send + Sync>;

/// How a layer answers a rejection.
#[derive(Clone, Default)]
pub(crate) struct Respond(Option<RespondFn>);

impl fmt::Debug for Respond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Respond(custom)"
        } else {
            "Respond(problem+json)"
        })
    }
}

impl Respond {
    pub(crate) fn custom(f: impl Fn(&Rejection) -> Response + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    pub(crate) fn respond(&self, rejection: Rejection, client: Option<IpAddr>) -> Response {
        rejection.log(client);
        let mut response = match &self.0 {
            Some(custom) => custom(&rejection),
            None => rejection.to_response(),
        };
        rejection.add_headers(&mut response);
        response.extensions_mut().insert(rejection);
        response
    }
}
