//! A local server that plays both providers as senders and as keepers of records: it sends
//! signed deliveries to an app as Contentstack and Contentful do (retrying a failed one), and
//! records each attempt the way their Content Management APIs then give them back:
//!
//! - Contentstack: `GET /v3/webhooks/{uid}/executions` (`skip`, `limit`, `from`, `to`),
//!   `GET /v3/webhooks/{uid}` (`disabled`), `POST /v3/webhooks/{uid}/retry`
//!   (`{"execution_uid"}`, which sends the delivery again, signed afresh), with the stack's
//!   management token (`authorization`) and `api_key`;
//! - Contentful: `GET /spaces/{space}/webhooks/{id}/calls` (`skip`, `limit`),
//!   `.../calls/{call_id}` and `.../health`, with a CMA token (`Authorization: Bearer`).
//!
//! Every call to the record APIs is kept (method, path, query, headers), for comparing what
//! the vendors' SDKs send with what countersign sends.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use countersign_core::contentful::{Context, RequestToSign, SigningSecret, sign};
use countersign_core::contentstack::{SaltLength, SigningKey};
use serde_json::{Value, json};

/// The stack whose records the server keeps.
pub const STACK: &str = "bltreconcile0000001";
/// The Contentstack webhook's uid.
pub const CONTENTSTACK_WEBHOOK: &str = "bltwebhook00000001";
/// The stack's management token.
pub const MANAGEMENT_TOKEN: &str = "cs-management-token";
/// The Contentful space whose records the server keeps.
pub const SPACE: &str = "space-1";
/// The Contentful webhook's id.
pub const CONTENTFUL_WEBHOOK: &str = "0webhook1";
/// The space's CMA token.
pub const CMA_TOKEN: &str = "cf-cma-token";
/// How many times a sender tries a delivery (the first attempt and its retries, without the
/// waits between them).
pub const ATTEMPTS: usize = 3;

/// A call to the record APIs, as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `GET` or `POST`.
    pub method: String,
    /// The path.
    pub path: String,
    /// The query's pairs, decoded, sorted.
    pub query: Vec<(String, String)>,
    /// The headers that carry meaning (`authorization`, `api_key`, `content-type`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

/// One Contentstack execution: a delivery and its attempts.
struct Execution {
    uid: String,
    created_at: SystemTime,
    url: String,
    body: String,
    /// The status of each attempt (0: no answer).
    statuses: Vec<u16>,
}

/// One Contentful call.
struct Call {
    id: String,
    requested_at: SystemTime,
    url: String,
    headers: Vec<(String, String)>,
    body: String,
    status: u16,
}

struct State {
    key: SigningKey,
    executions: Mutex<Vec<Execution>>,
    calls: Mutex<Vec<Call>>,
    seen: Mutex<Vec<Seen>>,
    disabled: AtomicBool,
    serial: AtomicUsize,
    /// Which OAuth access tokens (`authorization: Bearer ..`) act for the stack.
    bearer: Mutex<Option<BearerCheck>>,
}

/// Whether an OAuth access token acts for the stack.
type BearerCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn rfc3339(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    at.replace_nanosecond(at.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn parse_time(text: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// The running server. Its tasks end with the runtime that started it.
#[derive(Clone)]
pub struct ProviderRecords {
    /// `http://127.0.0.1:<port>`: Contentstack's region base URL, and Contentful's CMA.
    pub base: String,
    state: Arc<State>,
}

impl ProviderRecords {
    /// The server's state, not served yet: serve [`router`](Self::router) beside another's
    /// routes (the local Developer Hub's, for OAuth), then say where with
    /// [`served_at`](Self::served_at). Contentstack's deliveries are signed with `key`.
    #[must_use]
    pub fn new(key: SigningKey) -> Self {
        Self {
            base: String::new(),
            state: Arc::new(State {
                key,
                executions: Mutex::default(),
                calls: Mutex::default(),
                seen: Mutex::default(),
                disabled: AtomicBool::new(false),
                serial: AtomicUsize::new(0),
                bearer: Mutex::default(),
            }),
        }
    }

    /// Serves on a free loopback port on the current runtime; Contentstack's deliveries are
    /// signed with `key`.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start(key: SigningKey) -> Self {
        let records = Self::new(key);
        let app = records.router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("its address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        records.served_at(&format!("http://{address}"))
    }

    /// Where its router is served.
    #[must_use]
    pub fn served_at(mut self, base: &str) -> Self {
        base.clone_into(&mut self.base);
        self
    }

    /// Takes OAuth access tokens for which `check` holds as the stack's, besides its
    /// management token.
    pub fn accept_bearer(&self, check: impl Fn(&str) -> bool + Send + Sync + 'static) {
        *lock(&self.state.bearer) = Some(Arc::new(check));
    }

    /// The record APIs' routes.
    pub fn router(&self) -> Router {
        let state = &self.state;
        let s = || Arc::clone(state);
        Router::new()
                .route(
                    "/v3/webhooks/{uid}/executions",
                    get({
                        let state = s();
                        move |Path(uid): Path<String>,
                              query: RawQuery,
                              method: Method,
                              uri: Uri,
                              headers: HeaderMap| async move {
                            let seen =
                                record(&state, &method, &uri, query.0.as_deref(), &headers, "");
                            executions(&state, &uid, &seen, &headers)
                        }
                    }),
                )
                .route(
                    "/v3/webhooks/{uid}",
                    get({
                        let state = s();
                        move |Path(uid): Path<String>,
                              method: Method,
                              uri: Uri,
                              headers: HeaderMap| async move {
                            record(&state, &method, &uri, None, &headers, "");
                            webhook(&state, &uid, &headers)
                        }
                    }),
                )
                .route(
                    "/v3/webhooks/{uid}/retry",
                    post({
                        let state = s();
                        move |Path(uid): Path<String>,
                              method: Method,
                              uri: Uri,
                              headers: HeaderMap,
                              body: String| async move {
                            record(&state, &method, &uri, None, &headers, &body);
                            retry(&state, &uid, &headers, &body).await
                        }
                    }),
                )
                .route(
                    "/spaces/{space}/webhooks/{id}/calls",
                    get({
                        let state = s();
                        move |Path((space, id)): Path<(String, String)>,
                              query: RawQuery,
                              method: Method,
                              uri: Uri,
                              headers: HeaderMap| async move {
                            let seen =
                                record(&state, &method, &uri, query.0.as_deref(), &headers, "");
                            calls(&state, &space, &id, &seen, &headers)
                        }
                    }),
                )
                .route(
                    "/spaces/{space}/webhooks/{id}/calls/{call}",
                    get({
                        let state = s();
                        move |Path((space, id, call)): Path<(String, String, String)>,
                              method: Method,
                              uri: Uri,
                              headers: HeaderMap| async move {
                            record(&state, &method, &uri, None, &headers, "");
                            call_details(&state, &space, &id, &call, &headers)
                        }
                    }),
                )
                .route(
                    "/spaces/{space}/webhooks/{id}/health",
                    get({
                        let state = s();
                        move |Path((space, id)): Path<(String, String)>,
                              method: Method,
                              uri: Uri,
                              headers: HeaderMap| async move {
                            record(&state, &method, &uri, None, &headers, "");
                            health(&state, &space, &id, &headers)
                        }
                    }),
                )
    }

    /// Sends `body` to `url` as Contentstack sends a delivery of the stack's webhook, signed
    /// with RSA-PSS, up to [`ATTEMPTS`] times until one is answered 2xx, and records the
    /// execution. The last attempt's status (0: no answer).
    pub async fn contentstack_send(&self, url: &str, body: &str) -> u16 {
        let n = self.state.serial.fetch_add(1, Ordering::Relaxed);
        let mut statuses = Vec::new();
        for _ in 0..ATTEMPTS {
            let status = send_contentstack(&self.state.key, url, body).await;
            statuses.push(status);
            if (200..300).contains(&status) {
                break;
            }
        }
        let last = statuses.last().copied().unwrap_or(0);
        lock(&self.state.executions).push(Execution {
            uid: format!("bltexecution{n:08}"),
            created_at: SystemTime::now(),
            url: url.to_owned(),
            body: body.to_owned(),
            statuses,
        });
        last
    }

    /// Sends `body` to `url` as Contentful sends a call of the space's webhook, signed with
    /// the space's webhook signing `secret`, with `idempotency_key`, up to [`ATTEMPTS`] times,
    /// and records the call. The last attempt's status (0: no answer).
    pub async fn contentful_send(
        &self,
        url: &str,
        secret: &str,
        idempotency_key: &str,
        body: &str,
    ) -> u16 {
        let mut status = 0;
        let mut sent = Vec::new();
        for _ in 0..ATTEMPTS {
            let (headers, answer) = send_contentful(url, secret, idempotency_key, body).await;
            sent = headers;
            status = answer;
            if (200..300).contains(&status) {
                break;
            }
        }
        let n = self.state.serial.fetch_add(1, Ordering::Relaxed);
        lock(&self.state.calls).push(Call {
            id: format!("call-{n:08}"),
            requested_at: SystemTime::now(),
            url: url.to_owned(),
            headers: sent,
            body: body.to_owned(),
            status,
        });
        status
    }

    /// Makes the last Contentstack execution `by` older, as if made that long ago.
    pub fn age_last_execution(&self, by: std::time::Duration) {
        if let Some(last) = lock(&self.state.executions).last_mut() {
            last.created_at -= by;
        }
    }

    /// Disables the Contentstack webhook, or enables it again.
    pub fn disable(&self, disabled: bool) {
        self.state.disabled.store(disabled, Ordering::Relaxed);
    }

    /// Every call to the record APIs so far.
    #[must_use]
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state.seen).clone()
    }

    /// Forgets the calls seen so far.
    pub fn forget_seen(&self) {
        lock(&self.state.seen).clear();
    }
}

async fn send_contentstack(key: &SigningKey, url: &str, body: &str) -> u16 {
    let signature = key
        .sign_webhook(body.as_bytes(), SaltLength::Digest)
        .expect("the key signs");
    let sent = client()
        .post(url)
        .header("content-type", "application/json")
        .header("x-contentstack-request-signature", signature)
        .body(body.to_owned())
        .send()
        .await;
    sent.map_or(0, |answer| answer.status().as_u16())
}

async fn send_contentful(
    url: &str,
    secret: &str,
    idempotency_key: &str,
    body: &str,
) -> (Vec<(String, String)>, u16) {
    let target = url
        .find("://")
        .and_then(|at| url[at + 3..].find('/').map(|path| &url[at + 3 + path..]))
        .unwrap_or("/");
    let own = [
        ("content-type", "application/json"),
        ("x-contentful-topic", "ContentManagement.Entry.publish"),
        ("x-contentful-idempotency-key", idempotency_key),
    ];
    let mut request = RequestToSign::new(http::Method::POST, target).with_body(body.as_bytes());
    for (name, value) in own {
        request = request.with_header(name, value);
    }
    let context = Context {
        space_id: Some(SPACE.to_owned()),
        environment_id: Some("master".to_owned()),
        ..Context::default()
    };
    let signed = sign(
        &SigningSecret::new(secret).expect("a valid secret"),
        &request,
        SystemTime::now(),
        &context,
    )
    .expect("the headers sign");
    let headers: Vec<(String, String)> = own
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .chain(signed.iter().map(|(n, v)| (n.to_owned(), v.to_owned())))
        .collect();
    let mut http = client().post(url);
    for (name, value) in &headers {
        http = http.header(name, value);
    }
    let status = http
        .body(body.to_owned())
        .send()
        .await
        .map_or(0, |answer| answer.status().as_u16());
    (headers, status)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
}

/// Keeps the call, and returns it.
fn record(
    state: &State,
    method: &Method,
    uri: &Uri,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &str,
) -> Seen {
    let mut pairs: Vec<(String, String)> = query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    let headers = ["authorization", "api_key", "content-type"]
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect();
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: pairs,
        headers,
        body: body.to_owned(),
    };
    lock(&state.seen).push(seen.clone());
    seen
}

fn status(code: StatusCode, message: &str) -> Response {
    (code, axum::Json(json!({"error_message": message}))).into_response()
}

/// Contentstack's checks: the management token or an OAuth token of the stack, and the
/// stack.
fn contentstack_refusal(state: &State, headers: &HeaderMap, uid: &str) -> Option<Response> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = header("authorization").unwrap_or_default();
    let bearer = lock(&state.bearer).clone();
    let authorized = authorization == MANAGEMENT_TOKEN
        || authorization
            .strip_prefix("Bearer ")
            .zip(bearer)
            .is_some_and(|(token, check)| check(token));
    if !authorized || header("api_key") != Some(STACK) {
        return Some(status(StatusCode::UNAUTHORIZED, "not authorized"));
    }
    (uid != CONTENTSTACK_WEBHOOK).then(|| status(StatusCode::NOT_FOUND, "no such webhook"))
}

fn query_value<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.query
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The page a listing asks for: `skip` (0) and `limit` (100, at most 100).
fn page_of(seen: &Seen) -> (usize, usize) {
    let number = |name: &str| query_value(seen, name).and_then(|v| v.parse::<usize>().ok());
    (
        number("skip").unwrap_or(0),
        number("limit").unwrap_or(100).min(100),
    )
}

fn executions(state: &State, uid: &str, seen: &Seen, headers: &HeaderMap) -> Response {
    if let Some(refusal) = contentstack_refusal(state, headers, uid) {
        return refusal;
    }
    let (skip, limit) = page_of(seen);
    let from = query_value(seen, "from").and_then(parse_time);
    let to = query_value(seen, "to").and_then(parse_time);
    let executions = lock(&state.executions);
    let page: Vec<String> = executions
        .iter()
        .filter(|e| from.is_none_or(|from| e.created_at >= from))
        .filter(|e| to.is_none_or(|to| e.created_at <= to))
        .skip(skip)
        .take(limit)
        .map(|e| {
            let details: Vec<String> = e
                .statuses
                .iter()
                .enumerate()
                .map(|(n, status)| {
                    // The body as an object, as the API gives it: the text as sent, spaced.
                    format!(
                        r#"{{"retry_number":{n},"request":{{"method":"POST","uri":{},"body": {} }},"response":{{"statusCode":{status}}}}}"#,
                        json!(e.url),
                        e.body
                    )
                })
                .collect();
            let last = e.statuses.last().copied().unwrap_or(0);
            format!(
                r#"{{"uid":{},"channel":["content_types.entries.publish"],"created_at":{},"event_data":{{"api_key":{}}},"request_details":[{}],"retry_count":{},"status":{last},"webhooks":[{}]}}"#,
                json!(e.uid),
                json!(rfc3339(e.created_at)),
                json!(STACK),
                details.join(","),
                e.statuses.len().saturating_sub(1),
                json!(CONTENTSTACK_WEBHOOK)
            )
        })
        .collect();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"webhooks":[{}]}}"#, page.join(",")),
    )
        .into_response()
}

fn webhook(state: &State, uid: &str, headers: &HeaderMap) -> Response {
    if let Some(refusal) = contentstack_refusal(state, headers, uid) {
        return refusal;
    }
    axum::Json(json!({"webhook": {
        "uid": uid, "name": "reconciled", "disabled": state.disabled.load(Ordering::Relaxed),
        "channels": ["content_types.entries.publish"],
    }}))
    .into_response()
}

async fn retry(state: &State, uid: &str, headers: &HeaderMap, body: &str) -> Response {
    if let Some(refusal) = contentstack_refusal(state, headers, uid) {
        return refusal;
    }
    let Some(execution) = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|body| body["execution_uid"].as_str().map(str::to_owned))
    else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "execution_uid is required",
        );
    };
    let target = lock(&state.executions)
        .iter()
        .find(|e| e.uid == execution)
        .map(|e| (e.url.clone(), e.body.clone()));
    let Some((url, delivery)) = target else {
        return status(StatusCode::NOT_FOUND, "no such execution");
    };
    let answer = send_contentstack(&state.key, &url, &delivery).await;
    if let Some(e) = lock(&state.executions)
        .iter_mut()
        .find(|e| e.uid == execution)
    {
        e.statuses.push(answer);
    }
    axum::Json(json!({"notice": "The webhook was retried."})).into_response()
}

/// Contentful's checks: the CMA token, the space and the webhook.
fn contentful_refusal(headers: &HeaderMap, space: &str, id: &str) -> Option<Response> {
    let bearer = format!("Bearer {CMA_TOKEN}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
        return Some(status(StatusCode::UNAUTHORIZED, "AccessTokenInvalid"));
    }
    (space != SPACE || id != CONTENTFUL_WEBHOOK).then(|| status(StatusCode::NOT_FOUND, "NotFound"))
}

fn calls(state: &State, space: &str, id: &str, seen: &Seen, headers: &HeaderMap) -> Response {
    if let Some(refusal) = contentful_refusal(headers, space, id) {
        return refusal;
    }
    let (skip, limit) = page_of(seen);
    let calls = lock(&state.calls);
    // Newest first, as Contentful lists them; it keeps the last 500.
    let kept: Vec<&Call> = calls.iter().rev().take(500).collect();
    let items: Vec<Value> = kept
        .iter()
        .skip(skip)
        .take(limit)
        .map(|call| {
            json!({
                "sys": {"id": call.id, "type": "WebhookCallOverview"},
                "statusCode": call.status,
                "errors": if call.status == 0 { json!(["Timeout"]) } else { json!([]) },
                "eventType": "publish",
                "url": call.url,
                "requestAt": rfc3339(call.requested_at),
                "responseAt": rfc3339(call.requested_at),
            })
        })
        .collect();
    axum::Json(json!({
        "sys": {"type": "Array"}, "total": kept.len(), "skip": skip, "limit": limit, "items": items,
    }))
    .into_response()
}

fn call_details(state: &State, space: &str, id: &str, call: &str, headers: &HeaderMap) -> Response {
    if let Some(refusal) = contentful_refusal(headers, space, id) {
        return refusal;
    }
    let calls = lock(&state.calls);
    let Some(call) = calls.iter().find(|c| c.id == call) else {
        return status(StatusCode::NOT_FOUND, "NotFound");
    };
    let headers: serde_json::Map<String, Value> = call
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), json!(v)))
        .collect();
    axum::Json(json!({
        "sys": {"id": call.id, "type": "WebhookCallDetails"},
        "request": {"url": call.url, "method": "POST", "headers": headers, "body": call.body},
        "response": {"statusCode": call.status, "headers": {}, "body": ""},
        "statusCode": call.status,
        "errors": if call.status == 0 { json!(["Timeout"]) } else { json!([]) },
        "eventType": "publish",
        "url": call.url,
        "requestAt": rfc3339(call.requested_at),
        "responseAt": rfc3339(call.requested_at),
    }))
    .into_response()
}

fn health(state: &State, space: &str, id: &str, headers: &HeaderMap) -> Response {
    if let Some(refusal) = contentful_refusal(headers, space, id) {
        return refusal;
    }
    let calls = lock(&state.calls);
    let healthy = calls
        .iter()
        .filter(|c| (200..300).contains(&c.status))
        .count();
    axum::Json(json!({
        "sys": {"id": id, "type": "Webhook"},
        "calls": {"total": calls.len(), "healthy": healthy},
    }))
    .into_response()
}
