//! A local AWS Lambda Runtime API (`/2018-06-01/runtime/...`), as Lambda serves it to a
//! function's process: [`RuntimeApi::invoke`] queues an event, the function's runtime
//! (`lambda_http::run`, `lambda_runtime::run`) takes it from `invocation/next` and posts its
//! answer to `invocation/{id}/response` (or `/error`), which `invoke` returns. Start the
//! function's binary with [`RuntimeApi::env`], the variables Lambda sets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// How long a function has for one invocation (its `Lambda-Runtime-Deadline-Ms`).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// An event waiting for the function.
struct Invocation {
    id: String,
    event: Value,
}

/// What the function answered an invocation.
type Answer = Result<Value, Value>;

struct Shared {
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    answers: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_error: Mutex<Option<Value>>,
}

/// The Runtime API of one function, on a free loopback port; stops when dropped.
pub struct RuntimeApi {
    address: SocketAddr,
    invocations: mpsc::UnboundedSender<Invocation>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// The API, listening.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start() -> Self {
        let (invocations, queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(queue),
            answers: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(|state, id, body| answered(state, id, body, true)),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(|state, id, body| answered(state, id, body, false)),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = listener.local_addr().expect("a bound address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            address,
            invocations,
            shared,
            next_id: AtomicU64::new(1),
            server,
        }
    }

    /// The variables Lambda sets for a function named `name` that reads this API.
    #[must_use]
    pub fn env(&self, name: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_LAMBDA_RUNTIME_API", self.address.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/12/07/[$LATEST]0".to_owned(),
            ),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            ("AWS_REGION", "eu-west-1".to_owned()),
        ]
    }

    /// Hands `event` to the function and waits for its answer: `Ok` with what it posted to
    /// `response`, `Err` with what it posted to `error`.
    ///
    /// # Panics
    /// When the function does not answer within [`TIMEOUT`] (its process died, or never took
    /// the invocation), with the error it reported at its start if any.
    pub async fn invoke(&self, event: &Value) -> Answer {
        let id = format!("req-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (answer, answered) = oneshot::channel();
        self.shared
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), answer);
        self.invocations
            .send(Invocation {
                id,
                event: event.clone(),
            })
            .expect("the API runs while it is held");
        match tokio::time::timeout(TIMEOUT, answered).await {
            Ok(Ok(answer)) => answer,
            _ => {
                let init = self
                    .shared
                    .init_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                panic!("the function did not answer in time (its init error: {init:?})")
            }
        }
    }
}

/// `invocation/next`: the next event, as long as it takes to come, with the headers Lambda
/// sends.
async fn next(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let invocation = shared.queue.lock().await.recv().await;
    let Some(Invocation { id, event }) = invocation else {
        return StatusCode::GONE.into_response();
    };
    let deadline = (SystemTime::now() + TIMEOUT)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:eu-west-1:123456789012:function:countersign".to_owned(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".to_owned(),
    );
    (headers, axum::Json(event)).into_response()
}

/// `invocation/{id}/response` and `/error`: the function's answer, handed to its `invoke`.
async fn answered(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
    ok: bool,
) -> StatusCode {
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let waiting = shared
        .answers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
    match waiting {
        Some(answer) => {
            let _ = answer.send(if ok { Ok(value) } else { Err(value) });
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

/// `init/error`: what the function reported before it could take an invocation.
async fn init_error(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    *shared
        .init_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(value);
    StatusCode::ACCEPTED
}
