//! Contentstack's record: a webhook's executions (`GET /v3/webhooks/{uid}/executions`), and the
//! webhook's own state (`GET /v3/webhooks/{uid}`).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Attempt, RecordedDelivery, Unusable, rfc3339, same_tenant};
use crate::contentstack::{Envelope, INSTALLATION_MODULE};
use crate::crypto::sha256;
use crate::provider::Provider;
use crate::replay::{ReplayKey, Scope};

/// How many executions Contentstack gives in one page at most.
pub const PAGE_SIZE: usize = 100;

/// One page of `GET /v3/webhooks/{uid}/executions`: `{"webhooks": [execution, ...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionsPage {
    /// The attempts of the page, each read as the live path would read its delivery.
    pub attempts: Vec<Attempt>,
    /// How many executions the page held.
    pub len: usize,
}

#[derive(Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    webhooks: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawExecution<'a> {
    uid: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(borrow, default)]
    request_details: Vec<RawRequestDetails<'a>>,
}

#[derive(Deserialize)]
struct RawRequestDetails<'a> {
    #[serde(borrow, default)]
    request: Option<RawRequest<'a>>,
}

#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
}

impl ExecutionsPage {
    /// Reads a page of executions of the webhook of the stack `api_key`, in the replay
    /// `namespace` of the live verifier
    /// ([`WebhookVerifier::with_namespace`](crate::contentstack::WebhookVerifier::with_namespace)).
    ///
    /// Each execution's delivery is its body as the record holds it (each attempt's request),
    /// re-encoded as the verifier's JSON fallback re-encodes a body (`JSON.stringify` of the
    /// parsed body: the bytes Contentstack sends); its id is the live path's for those bytes.
    /// An execution whose attempts sent different bodies has one key per body.
    ///
    /// # Errors
    /// The answer is not a JSON object with a `webhooks` array. An execution that cannot be
    /// read becomes an attempt with [`Unusable::Malformed`].
    pub fn parse(answer: &[u8], api_key: &str, namespace: Option<&str>) -> Result<Self, Unusable> {
        let page: RawPage<'_> = serde_json::from_slice(answer).map_err(|e| {
            Unusable::Malformed(format!(
                "the executions answer is not {{\"webhooks\": [..]}}: {e}"
            ))
        })?;
        let len = page.webhooks.len();
        let attempts = page
            .webhooks
            .into_iter()
            .map(|raw| execution(raw, api_key, namespace))
            .collect();
        Ok(Self { attempts, len })
    }
}

fn execution(raw: &RawValue, api_key: &str, namespace: Option<&str>) -> Attempt {
    let execution: RawExecution<'_> = match serde_json::from_str(raw.get()) {
        Ok(execution) => execution,
        Err(e) => {
            return Attempt {
                provider_id: uid_of(raw),
                attempted_at: None,
                status: None,
                delivery: Err(Unusable::Malformed(format!("an execution: {e}"))),
            };
        }
    };
    let bodies: Vec<&RawValue> = execution
        .request_details
        .iter()
        .filter_map(|details| details.request.as_ref()?.body)
        .collect();
    Attempt {
        provider_id: execution.uid,
        attempted_at: execution.created_at.as_deref().and_then(rfc3339),
        status: execution.status,
        delivery: delivery(&bodies, api_key, namespace),
    }
}

/// The uid of an execution that is not of the expected shape, if it has one.
fn uid_of(raw: &RawValue) -> String {
    #[derive(Deserialize)]
    struct Uid {
        uid: String,
    }
    serde_json::from_str::<Uid>(raw.get()).map_or_else(|_| String::new(), |u| u.uid)
}

/// The delivery of an execution whose attempts sent `bodies`: under the key of the last body
/// sent (the form a retry of the provider's would take), with a key for each other form.
fn delivery(
    bodies: &[&RawValue],
    api_key: &str,
    namespace: Option<&str>,
) -> Result<RecordedDelivery, Unusable> {
    let mut keys: Vec<ReplayKey> = Vec::with_capacity(bodies.len());
    let mut last = None;
    for body in bodies {
        let (sent, raw) = recorded_body(body)?;
        // A body recorded as text that is not as JSON.stringify writes it: the live path's id
        // of those very bytes too.
        for bytes in std::iter::once(&sent).chain(raw.as_ref().filter(|raw| **raw != sent)) {
            let scope = Scope {
                namespace,
                tenant: Some(api_key),
            };
            let key = ReplayKey::contentstack_delivery(scope, &sha256(bytes));
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        last = Some(sent);
    }
    let sent = last.ok_or(Unusable::NoBody)?;
    let (key, body) = recorded_delivery(&sent, api_key, namespace)?;
    keys.retain(|other| *other != key);
    Ok(RecordedDelivery {
        key,
        other_keys: keys,
        provider: Provider::Contentstack,
        tenant: Some(api_key.to_owned()),
        body,
        signed_headers: Vec::new(),
    })
}

/// The bytes Contentstack sent for a recorded body (a JSON object as the record holds it,
/// re-encoded as `JSON.stringify` encodes it, Contentstack's own sender; or a string holding
/// them), and the string's own bytes when it was one.
fn recorded_body(body: &RawValue) -> Result<(Vec<u8>, Option<Vec<u8>>), Unusable> {
    let text = body.get();
    let raw = if text.starts_with('"') {
        Some(
            serde_json::from_str::<String>(text)
                .map_err(|e| Unusable::Malformed(format!("a request body: {e}")))?
                .into_bytes(),
        )
    } else {
        None
    };
    let sent = crate::js::json::canonicalize(raw.as_deref().unwrap_or(text.as_bytes()))
        .map_err(|_| Unusable::Malformed("a request body is not JSON".to_owned()))?;
    Ok((sent, raw))
}

/// The live path's key and body for `bytes`, a delivery's body as Contentstack sends it, from
/// the webhook of the stack `api_key`.
///
/// # Errors
/// [`Unusable::OtherTenant`] when the body names another stack; [`Unusable::InstallationEvent`]
/// for an installation event; [`Unusable::Malformed`] when the body is not a JSON object.
pub fn recorded_delivery(
    bytes: &[u8],
    api_key: &str,
    namespace: Option<&str>,
) -> Result<(ReplayKey, Bytes), Unusable> {
    let envelope = Envelope::parse(bytes).map_err(|e| Unusable::Malformed(e.to_string()))?;
    same_tenant(api_key, envelope.api_key.as_deref())?;
    if envelope.module.as_deref() == Some(INSTALLATION_MODULE) {
        return Err(Unusable::InstallationEvent);
    }
    let scope = Scope {
        namespace,
        tenant: Some(api_key),
    };
    Ok((
        ReplayKey::contentstack_delivery(scope, &sha256(bytes)),
        Bytes::copy_from_slice(bytes),
    ))
}

/// A webhook's state, from `GET /v3/webhooks/{uid}`: `{"webhook": {"disabled": .., ..}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookState {
    /// Whether the webhook is disabled (by hand, or by the circuit breaker after 10 failures in
    /// a row): nothing is sent, and nothing is recorded, until it is enabled again.
    pub disabled: bool,
}

impl WebhookState {
    /// Reads the answer of `GET /v3/webhooks/{uid}`.
    ///
    /// # Errors
    /// [`Unusable::Malformed`] when it is not `{"webhook": {..}}`.
    pub fn parse(answer: &[u8]) -> Result<Self, Unusable> {
        #[derive(Deserialize)]
        struct Answer {
            webhook: Webhook,
        }
        #[derive(Deserialize)]
        struct Webhook {
            #[serde(default)]
            disabled: bool,
        }
        let answer: Answer = serde_json::from_slice(answer)
            .map_err(|e| Unusable::Malformed(format!("the webhook answer: {e}")))?;
        Ok(Self {
            disabled: answer.webhook.disabled,
        })
    }
}
