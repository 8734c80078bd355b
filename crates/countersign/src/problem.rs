//! Rejections: a stable status and reason code per failure, answered as `application/problem+json`.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use countersign_core::contentstack::{AppTokenError, AppTokenErrorKind};
use countersign_core::credentials::CredentialError;
use countersign_core::{contentful, contentstack};
use http::{HeaderName, HeaderValue, StatusCode, header};

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
    /// A rejection with this status, code, title and detail.
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
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
    }

    pub(crate) fn body_timeout(after: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "Request timeout",
            format!("the body did not arrive within {} ms", after.as_millis()),
        )
    }

    pub(crate) fn body_unreadable(detail: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            "Body unreadable",
            format!("reading the body failed: {detail}"),
        )
    }

    /// Adds `Retry-After` ([`RETRY_AFTER_SECS`](crate::replay::RETRY_AFTER_SECS)): the sender
    /// should come back, for the refusal is not its fault.
    pub(crate) fn retry_later(self) -> Self {
        self.with_header(
            header::RETRY_AFTER,
            HeaderValue::from(crate::replay::RETRY_AFTER_SECS),
        )
    }

    pub(crate) fn misconfigured(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code,
            "Server misconfigured",
            message,
        )
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

/// A title per signature-related reason code.
fn signature_title(code: &str) -> &'static str {
    match code {
        "signature_missing" => "Signature missing",
        "signature_malformed" => "Signature malformed",
        "signature_mismatch" => "Signature mismatch",
        "signed_headers_missing" => "Signed headers missing",
        "signed_headers_too_many" => "Too many signed headers",
        "target_unsigned" => "Unsigned request target",
        "signed_header_ambiguous" => "Ambiguous signed header",
        "request_kind_not_allowed" => "Request kind not allowed here",
        "context_conflict" => "Conflicting signed context",
        "timestamp_missing" => "Timestamp missing",
        "timestamp_malformed" => "Timestamp malformed",
        "timestamp_expired" => "Timestamp expired",
        "timestamp_in_future" => "Timestamp in the future",
        "key_unavailable" => "Verification key unavailable",
        "app_uid_mismatch" => "Not for this app",
        "stack_not_allowed" => "Not one of this app's stacks",
        "tenant_check_unavailable" => "Tenant check unavailable",
        _ => "Request not verified",
    }
}

impl From<contentful::Error> for Rejection {
    fn from(error: contentful::Error) -> Self {
        let code = error.kind().code();
        let status = match error.kind() {
            // Authentic, but not what this route takes.
            contentful::ErrorKind::KindNotAllowed => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        Self::new(status, code, signature_title(code), error.message())
    }
}

impl From<contentstack::Error> for Rejection {
    fn from(error: contentstack::Error) -> Self {
        use contentstack::ErrorKind;
        let code = error.kind().code();
        let status = match error.kind() {
            ErrorKind::KeyUnavailable | ErrorKind::TenantCheckUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // Authentic, but not for this app: the sender proved who it is.
            ErrorKind::AppMismatch | ErrorKind::StackNotAllowed => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        let rejection = Self::new(status, code, signature_title(code), error.message());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            rejection.retry_later()
        } else {
            rejection
        }
    }
}

impl From<AppTokenError> for Rejection {
    fn from(error: AppTokenError) -> Self {
        let status = match error.kind() {
            AppTokenErrorKind::KeyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppTokenErrorKind::AppMismatch => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        Self::new(
            status,
            error.kind().code(),
            "App-token not verified",
            error.message(),
        )
    }
}

impl From<CredentialError> for Rejection {
    fn from(error: CredentialError) -> Self {
        let title = match error {
            CredentialError::BasicAuthMissing
            | CredentialError::BasicAuthMalformed
            | CredentialError::BasicAuthMismatch => "Bad credentials",
            _ => "Required header missing or wrong",
        };
        Self::new(
            StatusCode::UNAUTHORIZED,
            error.code(),
            title,
            format!("{error}"),
        )
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
