//! Contentful's record: a webhook's recent calls (`GET /spaces/{space}/webhooks/{id}/calls`),
//! each call's details (`.../calls/{call_id}`), and the webhook's health (`.../health`).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;

use super::{Attempt, RecordedDelivery, Unusable, rfc3339, same_tenant};
use crate::contentful::recorded_webhook;
use crate::provider::Provider;

/// How many calls the listing gives in one page at most, as this crate asks for them.
pub const PAGE_SIZE: usize = 100;
/// Contentful keeps a call's request body up to 500 KB: a body this long may have been cut.
pub const TRUNCATED_AT: usize = 500_000;

/// A call in the listing: its id and when it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOverview {
    /// The call id, for its details.
    pub id: String,
    /// When Contentful made the call.
    pub requested_at: Option<std::time::SystemTime>,
    /// What the receiver answered (`None`: no answer, a timeout or a connection error).
    pub status: Option<u16>,
}

/// One page of the listing: `{"sys": {"type": "Array"}, "total", "skip", "limit", "items"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallsPage {
    /// The calls of the page.
    pub items: Vec<CallOverview>,
    /// How many calls the listing holds in all.
    pub total: usize,
}

#[derive(Deserialize)]
struct Sys {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOverview {
    sys: Sys,
    #[serde(default)]
    request_at: Option<String>,
    #[serde(default)]
    status_code: Option<serde_json::Value>,
}

fn status_of(code: Option<&serde_json::Value>) -> Option<u16> {
    code.and_then(serde_json::Value::as_u64)
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| *code > 0)
}

impl CallsPage {
    /// Reads a page of the listing.
    ///
    /// # Errors
    /// [`Unusable::Malformed`] when it is not of the documented shape.
    pub fn parse(answer: &[u8]) -> Result<Self, Unusable> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            total: usize,
            #[serde(default)]
            items: Vec<RawOverview>,
        }
        let raw: Raw = serde_json::from_slice(answer)
            .map_err(|e| Unusable::Malformed(format!("the calls answer: {e}")))?;
        Ok(Self {
            total: raw.total,
            items: raw
                .items
                .into_iter()
                .map(|item| CallOverview {
                    requested_at: item.request_at.as_deref().and_then(rfc3339),
                    status: status_of(item.status_code.as_ref()),
                    id: item.sys.id,
                })
                .collect(),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDetails {
    sys: Sys,
    #[serde(default)]
    request_at: Option<String>,
    #[serde(default)]
    status_code: Option<serde_json::Value>,
    request: Option<RawRequest>,
}

#[derive(Deserialize)]
struct RawRequest {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    body: Option<String>,
}

/// Reads a call's details (`GET /spaces/{space}/webhooks/{id}/calls/{call_id}`) of a webhook of
/// `space`, in the replay `namespace` of the live verifier
/// ([`RequestVerifier::with_namespace`](crate::contentful::RequestVerifier::with_namespace)):
/// the delivery the live path gives the recorded request, as a webhook
/// ([`recorded_webhook`]).
///
/// # Errors
/// [`Unusable::Malformed`] when the details are not of the documented shape. A request that
/// cannot be taken from the record is an attempt whose delivery says why.
pub fn call_details(
    answer: &[u8],
    space: &str,
    namespace: Option<&str>,
) -> Result<Attempt, Unusable> {
    let raw: RawDetails = serde_json::from_slice(answer)
        .map_err(|e| Unusable::Malformed(format!("the call details: {e}")))?;
    Ok(Attempt {
        attempted_at: raw.request_at.as_deref().and_then(rfc3339),
        status: status_of(raw.status_code.as_ref()),
        delivery: match raw.request {
            Some(request) => delivery(&request, space, namespace),
            None => Err(Unusable::NoBody),
        },
        provider_id: raw.sys.id,
    })
}

fn delivery(
    request: &RawRequest,
    space: &str,
    namespace: Option<&str>,
) -> Result<RecordedDelivery, Unusable> {
    let body = request.body.as_deref().unwrap_or_default();
    if body.len() >= TRUNCATED_AT {
        return Err(Unusable::Truncated);
    }
    let method = request.method.as_deref().unwrap_or("POST");
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| Unusable::Malformed(format!("the method {method:?}")))?;
    let uri: http::Uri = request
        .url
        .parse()
        .map_err(|_| Unusable::Malformed("the request's url".to_owned()))?;
    let target = uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        let values: Vec<&str> = match value {
            serde_json::Value::String(value) => vec![value],
            serde_json::Value::Array(values) => values
                .iter()
                .filter_map(serde_json::Value::as_str)
                .collect(),
            _ => Vec::new(),
        };
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        for value in values {
            if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                headers.append(name.clone(), value);
            }
        }
    }
    let verified = recorded_webhook(namespace, &method, target, &headers)
        .map_err(|e| Unusable::Refused(e.to_string()))?;
    same_tenant(space, verified.tenant())?;
    if verified.idempotency_key().is_none() {
        // Its id would be its signature's, and Contentful signs each retry afresh: the
        // live path may have received a retry under another id.
        return Err(Unusable::Refused(
            "the call signs no x-contentful-idempotency-key, so a retry of it has another id"
                .to_owned(),
        ));
    }
    Ok(RecordedDelivery {
        key: verified.replay_key(),
        other_keys: Vec::new(),
        provider: Provider::Contentful,
        tenant: verified.tenant().map(str::to_owned),
        body: Bytes::copy_from_slice(body.as_bytes()),
        signed_headers: verified
            .signed_headers()
            .filter(|(name, _)| !crate::sensitive::SENSITIVE_HEADERS.contains(name))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
    })
}

/// A webhook's health, from `GET /spaces/{space}/webhooks/{id}/health`:
/// `{"calls": {"total": .., "healthy": ..}}`, over its recent calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// The recent calls.
    pub total: u64,
    /// Of them, those answered 2xx.
    pub healthy: u64,
}

impl Health {
    /// Reads the answer.
    ///
    /// # Errors
    /// [`Unusable::Malformed`] when it is not of the documented shape.
    pub fn parse(answer: &[u8]) -> Result<Self, Unusable> {
        #[derive(Deserialize)]
        struct Answer {
            calls: Calls,
        }
        #[derive(Deserialize)]
        struct Calls {
            total: u64,
            healthy: u64,
        }
        let answer: Answer = serde_json::from_slice(answer)
            .map_err(|e| Unusable::Malformed(format!("the health answer: {e}")))?;
        Ok(Self {
            total: answer.calls.total,
            healthy: answer.calls.healthy,
        })
    }

    /// Whether every recent call was answered 2xx.
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        self.healthy >= self.total
    }
}
