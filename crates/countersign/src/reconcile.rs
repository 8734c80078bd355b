//! Reading the providers' records of their webhook attempts, for reconciling an inbox with
//! them (`countersign_inbox::Inbox::reconcile`) after an outage longer than the providers'
//! retries (feature `reconcile`).
//!
//! - [`ContentstackRecords`]: a stack webhook's executions (`GET /v3/webhooks/{uid}/executions`,
//!   30 days, paged), the webhook's state (disabled, by hand or by the circuit breaker), and
//!   asking Contentstack to send an execution again (`POST /v3/webhooks/{uid}/retry`). With a
//!   stack's management token, or the app's OAuth token ([`ContentstackRecords::with_call`]).
//! - [`ContentfulRecords`]: a space webhook's recent calls and their details (`GET
//!   /spaces/{space}/webhooks/{id}/calls[/{call_id}]`, the last 500) and its health. With a
//!   CMA token, or an app identity's access token.
//!
//! Each attempt comes back as [`Attempt`], read by [`countersign_core::reconcile`] into the
//! delivery the live path would have given it. The calls go over https only (plain http to
//! this machine alone), follow no redirect (a credential and a stack's api key go with each),
//! read at most 8 MiB an answer, and keep at most [`DEFAULT_MAX_BYTES`] of bodies a window.

use std::fmt;
use std::time::{Duration, SystemTime};

use countersign_core::Rejected;
use countersign_core::reconcile::contentful::{CallsPage, Health, call_details};
use countersign_core::reconcile::contentstack::{ExecutionsPage, WebhookState};
pub use countersign_core::reconcile::{Attempt, RecordedDelivery, Unusable};
use http::{HeaderMap, HeaderValue};

use crate::contentstack::Region;
use crate::http_client::{describe, no_redirect_client, read_limited};

/// Why a provider's records could not be read: a [`RecordsErrorKind`] and a message that
/// holds no token.
pub type RecordsError = Rejected<RecordsErrorKind>;

countersign_core::reason_kind! {
    /// The kinds of [`RecordsError`].
    pub enum RecordsErrorKind {
        /// The provider did not answer, answered 5xx or 429: try again later.
        Unavailable => CMA_UNAVAILABLE,
        /// The provider refused (401, 403, 404: a token without the right, a webhook it does
        /// not know), or answered what is not a record.
        Refused => RECORDS_REFUSED,
        /// The window holds more attempts than this reader takes
        /// ([`ContentstackRecords::with_max_attempts`]): reconcile a shorter one.
        TooMany => RECORDS_REFUSED,
        /// A setting that cannot be used: a base URL that is not https, a token that is not a
        /// header value.
        Misconfigured => RECORDS_REFUSED,
    }
}

/// How long one call to a provider may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most attempts a Contentstack reader takes from one window by default.
pub const DEFAULT_MAX_ATTEMPTS: usize = 10_000;
/// The most bytes of delivery bodies a reader keeps from one window by default: a window
/// with more is refused with [`RecordsErrorKind::TooMany`] (reconcile a shorter one).
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;
/// The largest answer read.
const MAX_ANSWER: usize = 8 << 20;

fn misconfigured(message: impl Into<String>) -> RecordsError {
    RecordsError::new(RecordsErrorKind::Misconfigured, message)
}

/// A header value that never shows in `Debug`.
fn secret_header(value: String, what: &str) -> Result<HeaderValue, RecordsError> {
    let mut value = HeaderValue::try_from(value)
        .map_err(|_| misconfigured(format!("the {what} cannot be a header value")))?;
    value.set_sensitive(true);
    Ok(value)
}

fn https_base(base: &str) -> Result<String, RecordsError> {
    let base = base.trim_end_matches('/');
    if countersign_core::ip::is_secure_url(base) {
        Ok(base.to_owned())
    } else {
        Err(misconfigured(
            "the provider's base URL must be https (plain http only to this machine)",
        ))
    }
}

/// What a path segment keeps as it is: RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One segment of a path, percent-encoded (a uid or id holds no `/`, but is not trusted to).
fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

/// Sends `request` and reads the answer, refused unless 2xx.
async fn fetch(request: reqwest::RequestBuilder, what: &str) -> Result<Vec<u8>, RecordsError> {
    let answer = request.send().await.map_err(|e| {
        RecordsError::new(
            RecordsErrorKind::Unavailable,
            format!("{what}: {}", describe(&e)),
        )
    })?;
    let status = answer.status();
    let body = read_limited(answer, MAX_ANSWER, what)
        .await
        .map_err(|e| RecordsError::new(RecordsErrorKind::Unavailable, e))?;
    if status.is_success() {
        Ok(body)
    } else if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
        Err(RecordsError::new(
            RecordsErrorKind::Unavailable,
            format!("{what}: the provider answered {status}"),
        ))
    } else {
        Err(RecordsError::new(
            RecordsErrorKind::Refused,
            format!("{what}: the provider answered {status}"),
        ))
    }
}

/// `url` with `query` appended, form-encoded.
fn with_query(url: &str, query: &[(&str, String)]) -> Result<reqwest::Url, RecordsError> {
    let mut url =
        reqwest::Url::parse(url).map_err(|_| misconfigured("the provider's URL is not a URL"))?;
    url.query_pairs_mut()
        .extend_pairs(query.iter().map(|(name, value)| (*name, value.as_str())));
    Ok(url)
}

fn malformed(unusable: &Unusable) -> RecordsError {
    RecordsError::new(RecordsErrorKind::Refused, unusable.to_string())
}

/// RFC 3339 in UTC to the millisecond, as Contentstack writes its times.
fn rfc3339(at: SystemTime) -> Result<String, RecordsError> {
    let out_of_range = || misconfigured("a time of the window is out of range");
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| out_of_range())?;
    let millis = std::time::Duration::from_millis(
        u64::try_from(since_epoch.as_millis()).map_err(|_| out_of_range())?,
    );
    let at = time::OffsetDateTime::UNIX_EPOCH
        .checked_add(time::Duration::try_from(millis).map_err(|_| out_of_range())?)
        .ok_or_else(out_of_range)?;
    at.format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| out_of_range())
}

/// Adds `attempts`' bodies to `kept`: refused past `max` bytes.
fn keep(kept: &mut usize, attempts: &[Attempt], max: usize) -> Result<(), RecordsError> {
    *kept += attempts
        .iter()
        .filter_map(|attempt| attempt.delivery.as_ref().ok())
        .map(|delivery| delivery.body.len())
        .sum::<usize>();
    if *kept > max {
        return Err(RecordsError::new(
            RecordsErrorKind::TooMany,
            format!(
                "the window holds more than {max} bytes of deliveries: reconcile a shorter one"
            ),
        ));
    }
    Ok(())
}

/// A stack webhook's records at Contentstack. `Debug` shows no token.
#[derive(Clone)]
pub struct ContentstackRecords {
    http: reqwest::Client,
    /// The CMA's base, version included: `https://eu-api.contentstack.com/v3`.
    base: String,
    api_key: String,
    headers: HeaderMap,
    namespace: Option<String>,
    max_attempts: usize,
}

impl ContentstackRecords {
    /// The records of the stack `api_key` in `region`, read with a stack management token
    /// (sent as Contentstack's SDK sends it: `authorization: <token>`).
    ///
    /// # Errors
    /// [`RecordsErrorKind::Misconfigured`] when the token or the api key cannot be a header,
    /// or the region's base URL is not https.
    pub fn with_management_token(
        region: &Region,
        api_key: &str,
        token: &str,
    ) -> Result<Self, RecordsError> {
        Self::new(
            &region.cma_base_url(),
            api_key,
            secret_header(token.to_owned(), "management token")?,
        )
    }

    /// The records of the stack `api_key` in `region`, read with an OAuth access token
    /// (`authorization: Bearer <token>`).
    ///
    /// # Errors
    /// As [`with_management_token`](Self::with_management_token).
    pub fn with_oauth_token(
        region: &Region,
        api_key: &str,
        token: &str,
    ) -> Result<Self, RecordsError> {
        Self::new(
            &region.cma_base_url(),
            api_key,
            secret_header(format!("Bearer {token}"), "OAuth token")?,
        )
    }

    /// The records of an installation's stack, read as the app with the call that
    /// [`ContentstackOAuth::cma`](crate::contentstack::oauth::ContentstackOAuth::cma) gives:
    /// its region, its token and its stack.
    ///
    /// # Errors
    /// [`RecordsErrorKind::Misconfigured`] when the call is for an organization, not a stack.
    #[cfg(feature = "oauth")]
    pub fn with_call(call: &crate::contentstack::oauth::CmaCall) -> Result<Self, RecordsError> {
        let api_key = call
            .headers
            .get("api_key")
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| misconfigured("the CMA call is not a stack's"))?
            .to_owned();
        let authorization = call
            .headers
            .get(http::header::AUTHORIZATION)
            .cloned()
            .ok_or_else(|| misconfigured("the CMA call has no authorization"))?;
        Self::new(&call.base_url, &api_key, authorization)
    }

    fn new(base: &str, api_key: &str, authorization: HeaderValue) -> Result<Self, RecordsError> {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, authorization);
        headers.insert(
            "api_key",
            HeaderValue::from_str(api_key)
                .map_err(|_| misconfigured("the stack api key cannot be a header value"))?,
        );
        Ok(Self {
            http: no_redirect_client(REQUEST_TIMEOUT),
            base: https_base(base)?,
            api_key: api_key.to_owned(),
            headers,
            namespace: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        })
    }

    /// The replay namespace of the live verifier
    /// ([`WebhookVerifier::with_namespace`](crate::contentstack::WebhookVerifier::with_namespace)):
    /// the ids are derived in it.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Takes at most `max` executions from one window ([`DEFAULT_MAX_ATTEMPTS`]); a window
    /// with more is refused with [`RecordsErrorKind::TooMany`].
    #[must_use]
    pub fn with_max_attempts(mut self, max: usize) -> Self {
        self.max_attempts = max.max(1);
        self
    }

    /// The stack whose records these are.
    #[must_use]
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The executions of the webhook `webhook` made from `from` to `to` (now when `None`),
    /// page after page, each read into the delivery the live path gives it.
    ///
    /// # Errors
    /// The provider did not answer or refused; [`RecordsErrorKind::TooMany`] past the most
    /// attempts taken.
    pub async fn executions(
        &self,
        webhook: &str,
        from: SystemTime,
        to: Option<SystemTime>,
    ) -> Result<Vec<Attempt>, RecordsError> {
        let url = format!("{}/webhooks/{}/executions", self.base, segment(webhook));
        let page_size = countersign_core::reconcile::contentstack::PAGE_SIZE;
        let mut attempts = Vec::new();
        let mut kept = 0;
        loop {
            let mut query = vec![
                ("skip", attempts.len().to_string()),
                ("limit", page_size.to_string()),
                ("from", rfc3339(from)?),
            ];
            if let Some(to) = to {
                query.push(("to", rfc3339(to)?));
            }
            let request = self
                .http
                .get(with_query(&url, &query)?)
                .headers(self.headers.clone());
            let answer = fetch(request, "the webhook's executions").await?;
            let page = ExecutionsPage::parse(&answer, &self.api_key, self.namespace.as_deref())
                .map_err(|e| malformed(&e))?;
            keep(&mut kept, &page.attempts, DEFAULT_MAX_BYTES)?;
            attempts.extend(page.attempts);
            if page.len < page_size {
                return Ok(attempts);
            }
            if attempts.len() >= self.max_attempts {
                return Err(RecordsError::new(
                    RecordsErrorKind::TooMany,
                    format!(
                        "the window holds more than {} executions: reconcile a shorter one",
                        self.max_attempts
                    ),
                ));
            }
        }
    }

    /// The webhook's state: disabled or not.
    ///
    /// # Errors
    /// The provider did not answer or refused.
    pub async fn webhook_state(&self, webhook: &str) -> Result<WebhookState, RecordsError> {
        let url = format!("{}/webhooks/{}", self.base, segment(webhook));
        let answer = fetch(
            self.http.get(&url).headers(self.headers.clone()),
            "the webhook",
        )
        .await?;
        WebhookState::parse(&answer).map_err(|e| malformed(&e))
    }

    /// Asks Contentstack to send the execution `execution` of `webhook` again, signed afresh
    /// (as `@contentstack/management`'s `webhook.retry` does).
    ///
    /// # Errors
    /// The provider did not answer or refused.
    pub async fn retry(&self, webhook: &str, execution: &str) -> Result<(), RecordsError> {
        let url = format!("{}/webhooks/{}/retry", self.base, segment(webhook));
        let request = self
            .http
            .post(&url)
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::json!({ "execution_uid": execution }).to_string());
        fetch(request, "the retry").await.map(drop)
    }
}

impl fmt::Debug for ContentstackRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentstackRecords")
            .field("base", &self.base)
            .field("api_key", &self.api_key)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Contentful's Content Management API.
pub const CONTENTFUL_CMA: &str = "https://api.contentful.com";
/// The content type of Contentful's Content Management API.
const CONTENTFUL_CONTENT_TYPE: &str = "application/vnd.contentful.management.v1+json";

/// A space webhook's records at Contentful. `Debug` shows no token.
#[derive(Clone)]
pub struct ContentfulRecords {
    http: reqwest::Client,
    base: String,
    space: String,
    headers: HeaderMap,
    namespace: Option<String>,
}

impl ContentfulRecords {
    /// The records of the space `space`, read with `token` (a CMA token, or an app identity's
    /// access token for the space) from [`CONTENTFUL_CMA`].
    ///
    /// # Errors
    /// [`RecordsErrorKind::Misconfigured`] when the token cannot be a header value.
    pub fn new(space: &str, token: &str) -> Result<Self, RecordsError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            secret_header(format!("Bearer {token}"), "CMA token")?,
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENTFUL_CONTENT_TYPE),
        );
        Ok(Self {
            http: no_redirect_client(REQUEST_TIMEOUT),
            base: CONTENTFUL_CMA.to_owned(),
            space: space.to_owned(),
            headers,
            namespace: None,
        })
    }

    /// Reads from `base` instead of [`CONTENTFUL_CMA`].
    ///
    /// # Errors
    /// [`RecordsErrorKind::Misconfigured`] unless `base` is https (or http to this machine).
    pub fn with_base_url(mut self, base: &str) -> Result<Self, RecordsError> {
        self.base = https_base(base)?;
        Ok(self)
    }

    /// The replay namespace of the live verifier
    /// ([`RequestVerifier::with_namespace`](crate::contentful::RequestVerifier::with_namespace)).
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The space whose records these are.
    #[must_use]
    pub fn space(&self) -> &str {
        &self.space
    }

    fn webhook_url(&self, webhook: &str) -> String {
        format!(
            "{}/spaces/{}/webhooks/{}",
            self.base,
            segment(&self.space),
            segment(webhook)
        )
    }

    /// The calls of the webhook `webhook` made since `since` (all that Contentful keeps when
    /// `None`), each with its details read into the delivery the live path gives it. Contentful
    /// keeps a webhook's last 500 calls.
    ///
    /// # Errors
    /// The provider did not answer or refused.
    pub async fn calls(
        &self,
        webhook: &str,
        since: Option<SystemTime>,
    ) -> Result<Vec<Attempt>, RecordsError> {
        let url = format!("{}/calls", self.webhook_url(webhook));
        let page_size = countersign_core::reconcile::contentful::PAGE_SIZE;
        let mut calls = Vec::new();
        loop {
            let query = [
                ("skip", calls.len().to_string()),
                ("limit", page_size.to_string()),
            ];
            let request = self
                .http
                .get(with_query(&url, &query)?)
                .headers(self.headers.clone());
            let page = CallsPage::parse(&fetch(request, "the webhook's calls").await?)
                .map_err(|e| malformed(&e))?;
            let got = page.items.len();
            calls.extend(page.items);
            // Contentful keeps 500; a page short of its size, or the total reached, ends it.
            if got < page_size || calls.len() >= page.total || calls.len() >= 10 * page_size {
                break;
            }
        }
        let mut attempts = Vec::new();
        let mut kept = 0;
        for call in calls {
            if since.is_some_and(|since| call.requested_at.is_some_and(|at| at < since)) {
                continue;
            }
            let request = self
                .http
                .get(format!("{url}/{}", segment(&call.id)))
                .headers(self.headers.clone());
            let details = fetch(request, "a call's details").await?;
            let attempt = call_details(&details, &self.space, self.namespace.as_deref())
                .map_err(|e| malformed(&e))?;
            keep(&mut kept, std::slice::from_ref(&attempt), DEFAULT_MAX_BYTES)?;
            attempts.push(attempt);
        }
        Ok(attempts)
    }

    /// The webhook's health: of its recent calls, how many were answered 2xx.
    ///
    /// # Errors
    /// The provider did not answer or refused.
    pub async fn health(&self, webhook: &str) -> Result<Health, RecordsError> {
        let url = format!("{}/health", self.webhook_url(webhook));
        let answer = fetch(
            self.http.get(&url).headers(self.headers.clone()),
            "the webhook's health",
        )
        .await?;
        Health::parse(&answer).map_err(|e| malformed(&e))
    }
}

impl fmt::Debug for ContentfulRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentfulRecords")
            .field("base", &self.base)
            .field("space", &self.space)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}
