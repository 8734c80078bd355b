//! App identity against a local server that plays Contentful's access token endpoint and checks
//! the one-time token as Contentful would (RS256 with the registered key, the `kid` when the
//! app has several keys, `iss` the app in the path, a lifetime of at most ten minutes). The
//! toolkit's `getManagementToken`, pointed at the same server, is the oracle.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A test fails loudly on what it did not expect.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use countersign::Clock;
use countersign::contentful::app_identity::{AccessTokenErrorKind, AppIdentity};
use countersign::contentful::app_identity::{AppKey, one_time_token};
use countersign_tests::run_node;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

const KEY_A: &str =
    include_str!("../../../../crates/countersign-core/tests/data/keys/contentstack-a.private.pem");
const KEY_B: &str =
    include_str!("../../../../crates/countersign-core/tests/data/keys/contentstack-b.private.pem");
const APP: &str = "5GqqNVnhR8ZPI3ZKOvpArP";
const SPACE: &str = "space1";
const ENV: &str = "master";

/// What the fake endpoint answers before it answers normally.
#[derive(Clone)]
enum Script {
    Status(u16),
    RateLimited {
        reset: Option<u64>,
        retry_after: Option<&'static str>,
    },
}

impl Script {
    /// A `429` whose `X-Contentful-RateLimit-Reset` says `seconds`.
    fn reset(seconds: u64) -> Self {
        Self::RateLimited {
            reset: Some(seconds),
            retry_after: None,
        }
    }
}

#[derive(Default)]
struct Endpoint {
    /// Registered keys of the app: key id -> public key PEM.
    keys: HashMap<String, String>,
    /// Space environments where the app is installed.
    installed: Vec<(String, String)>,
    script: VecDeque<Script>,
    /// Every one-time token received.
    received: Vec<String>,
    /// The lifetime of the access tokens issued.
    token_lifetime: u64,
    /// How long each answer takes (to let callers pile up).
    delay: Duration,
    issued: u64,
}

type Shared = Arc<Mutex<Endpoint>>;

fn refuse(status: StatusCode, id: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"sys": {"type": "Error", "id": id}, "message": message})),
    )
        .into_response()
}

async fn exchange(
    State(endpoint): State<Shared>,
    Path((space, env, app)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let delay = endpoint.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let mut endpoint = endpoint.lock().unwrap();
    let Some(jwt) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
    else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "AccessTokenInvalid",
            "no bearer token",
        );
    };
    endpoint.received.push(jwt.clone());
    if let Some(script) = endpoint.script.pop_front() {
        return match script {
            Script::Status(status) => refuse(
                StatusCode::from_u16(status).unwrap(),
                "ServerError",
                "scripted failure",
            ),
            Script::RateLimited { reset, retry_after } => {
                let mut response = refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RateLimitExceeded",
                    "slow down",
                );
                if let Some(reset) = reset {
                    response
                        .headers_mut()
                        .insert("x-contentful-ratelimit-reset", reset.into());
                }
                if let Some(after) = retry_after {
                    response
                        .headers_mut()
                        .insert("retry-after", after.parse().unwrap());
                }
                response
            }
        };
    }
    // As Contentful checks it: the header's key id (required when the app has several keys),
    // RS256 with that key, iss = the app in the path, exp within ten minutes of iat.
    let header = match jsonwebtoken::decode_header(&jwt) {
        Ok(header) => header,
        Err(_) => return refuse(StatusCode::UNAUTHORIZED, "AccessTokenInvalid", "not a JWT"),
    };
    if header.alg != Algorithm::RS256 {
        return refuse(StatusCode::UNAUTHORIZED, "AccessTokenInvalid", "RS256 only");
    }
    let pem = match (&header.kid, endpoint.keys.len()) {
        (Some(kid), _) => endpoint.keys.get(kid).cloned(),
        (None, 1) => endpoint.keys.values().next().cloned(),
        (None, _) => None,
    };
    let Some(pem) = pem else {
        return refuse(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "no such key for the app",
        );
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[app.as_str()]);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    let claims = match jsonwebtoken::decode::<Value>(
        &jwt,
        &DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        &validation,
    ) {
        Ok(data) => data.claims,
        Err(e) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                &format!("the token does not verify: {e}"),
            );
        }
    };
    if claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() > 600 {
        return refuse(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "lifetime over ten minutes",
        );
    }
    if !endpoint.installed.contains(&(space.clone(), env.clone())) {
        return refuse(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the app is not installed here",
        );
    }
    endpoint.issued += 1;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let token = format!(
        "{}.{}.c2lnbmF0dXJl",
        b64.encode(r#"{"alg":"RS256"}"#),
        b64.encode(
            json!({"exp": now + endpoint.token_lifetime, "sub": format!("{space}/{env}"), "n": endpoint.issued})
                .to_string()
        )
    );
    (StatusCode::CREATED, axum::Json(json!({"token": token}))).into_response()
}

struct Server {
    url: String,
    endpoint: Shared,
}

impl Server {
    async fn start(keys: &[(&str, &str)]) -> Self {
        let endpoint = Arc::new(Mutex::new(Endpoint {
            keys: keys
                .iter()
                .map(|(kid, pem)| {
                    (
                        (*kid).to_owned(),
                        AppKey::from_pem(pem).unwrap().public_key_pem(),
                    )
                })
                .collect(),
            installed: vec![(SPACE.into(), ENV.into())],
            token_lifetime: 600,
            ..Endpoint::default()
        }));
        let app = Router::new()
            .route(
                "/spaces/{space}/environments/{env}/app_installations/{app}/access_tokens",
                post(exchange),
            )
            .with_state(Arc::clone(&endpoint));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, endpoint }
    }

    fn with(&self, f: impl FnOnce(&mut Endpoint)) {
        f(&mut self.endpoint.lock().unwrap());
    }

    fn received(&self) -> Vec<String> {
        self.endpoint.lock().unwrap().received.clone()
    }

    fn identity(&self, pem: &str) -> AppIdentity {
        AppIdentity::new(APP, AppKey::from_pem(pem).unwrap())
            .with_host(&self.url)
            .unwrap()
    }
}

/// The two JSON parts of a JWT, as text: their order matters to bit-exactness.
fn parts(jwt: &str) -> (String, String) {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut it = jwt.split('.');
    let header = String::from_utf8(b64.decode(it.next().unwrap()).unwrap()).unwrap();
    let claims = String::from_utf8(b64.decode(it.next().unwrap()).unwrap()).unwrap();
    (header, claims)
}

/// A clock running `offset` ahead of the system's, and the handle that sets the offset.
fn shifted_clock() -> (Clock, Arc<Mutex<Duration>>) {
    let offset = Arc::new(Mutex::new(Duration::ZERO));
    let shared = Arc::clone(&offset);
    let clock = Clock::from_fn(move || SystemTime::now() + *shared.lock().unwrap());
    (clock, offset)
}

fn install_jwt_provider() {
    // The fake endpoint verifies with jsonwebtoken before countersign may have installed its
    // provider: name one, whatever features the build unified. The first installed serves
    // both; RS256 gives the same bytes with either.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

mod failures;
mod leaks_and_cli;
mod tokens;
