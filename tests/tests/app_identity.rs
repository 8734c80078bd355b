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
use countersign::app_identity::{AccessTokenErrorKind, AppIdentity};
use countersign::contentful::app_identity::{AppKey, one_time_token};
use countersign_tests::run_node;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

const KEY_A: &str =
    include_str!("../../crates/countersign-core/tests/data/keys/contentstack-a.private.pem");
const KEY_B: &str =
    include_str!("../../crates/countersign-core/tests/data/keys/contentstack-b.private.pem");
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

#[test]
fn the_one_time_token_is_the_toolkits_byte_for_byte() {
    let key = AppKey::from_pem(KEY_A).unwrap();
    for key_id in [None, Some("key-1")] {
        let iat = 1_700_000_000;
        let ours =
            one_time_token(&key, APP, key_id, UNIX_EPOCH + Duration::from_secs(iat)).unwrap();
        let toolkit = run_node(
            "app-identity.mjs",
            &json!({"mode": "sign", "key": KEY_A, "appId": APP, "keyId": key_id, "iat": iat}),
        );
        assert_eq!(
            toolkit["token"].as_str().unwrap(),
            ours,
            "key id {key_id:?}"
        );
    }
    let (header, claims) = parts(
        &one_time_token(
            &key,
            APP,
            Some("k"),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_999),
        )
        .unwrap(),
    );
    assert_eq!(header, r#"{"alg":"RS256","typ":"JWT","kid":"k"}"#);
    assert_eq!(
        claims,
        format!(r#"{{"iat":1700000000,"exp":1700000600,"iss":"{APP}"}}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_toolkit_and_countersign_send_equivalent_tokens_and_both_get_one() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A), ("key-b", KEY_B)]).await;
    let host = server.url.clone();
    let toolkit = tokio::task::spawn_blocking(move || {
        run_node(
            "app-identity.mjs",
            &json!({"mode": "fetch", "key": KEY_B, "appInstallationId": APP, "spaceId": SPACE,
                    "environmentId": ENV, "keyId": "key-b", "host": host}),
        )
    })
    .await
    .unwrap();
    assert!(
        toolkit["token"].is_string(),
        "the toolkit got no token: {toolkit}"
    );

    let ours = server
        .identity(KEY_B)
        .with_key_id("key-b")
        .unwrap()
        .access_token(SPACE, ENV)
        .await
        .unwrap();
    assert!(ours.expose().contains('.'));

    let received = server.received();
    assert_eq!(received.len(), 2, "one exchange each");
    let (toolkit_header, toolkit_claims) = parts(&received[0]);
    let (our_header, our_claims) = parts(&received[1]);
    assert_eq!(our_header, toolkit_header);
    let (toolkit_claims, our_claims): (Value, Value) = (
        serde_json::from_str(&toolkit_claims).unwrap(),
        serde_json::from_str(&our_claims).unwrap(),
    );
    assert_eq!(our_claims["iss"], toolkit_claims["iss"]);
    let iat = |c: &Value| c["iat"].as_i64().unwrap();
    assert!((iat(&our_claims) - iat(&toolkit_claims)).abs() <= 5);
    for claims in [&our_claims, &toolkit_claims] {
        assert_eq!(claims["exp"].as_i64().unwrap() - iat(claims), 600);
        assert_eq!(
            claims.as_object().unwrap().len(),
            3,
            "iat, exp, iss and nothing else"
        );
    }
}

#[tokio::test]
async fn concurrent_callers_share_one_fetch_and_then_the_cached_token() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    server.with(|e| e.delay = Duration::from_millis(300));
    let identity = server.identity(KEY_A);
    let calls = (0..20).map(|_| {
        let identity = identity.clone();
        tokio::spawn(async move { identity.access_token(SPACE, ENV).await })
    });
    let tokens: Vec<_> = futures_join(calls).await;
    assert_eq!(server.received().len(), 1, "one fetch for twenty callers");
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    identity.access_token(SPACE, ENV).await.unwrap();
    assert_eq!(server.received().len(), 1, "the cached token is reused");
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<
        Item = tokio::task::JoinHandle<Result<T, countersign::app_identity::AccessTokenError>>,
    >,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap().unwrap());
    }
    out
}

#[tokio::test]
async fn a_token_is_replaced_before_it_expires_and_kept_per_space_environment() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    server.with(|e| e.installed.push((SPACE.into(), "staging".into())));
    let (clock, offset) = shifted_clock();
    let identity = server
        .identity(KEY_A)
        .with_clock(clock)
        .with_refresh_margin(Duration::from_secs(60));
    let first = identity.access_token(SPACE, ENV).await.unwrap();
    let staging = identity.access_token(SPACE, "staging").await.unwrap();
    assert_ne!(first, staging, "one token per space environment");
    assert_eq!(server.received().len(), 2);

    // 530 s later, 70 s are left: still kept.
    *offset.lock().unwrap() = Duration::from_secs(530);
    assert_eq!(identity.access_token(SPACE, ENV).await.unwrap(), first);
    assert_eq!(server.received().len(), 2);
    // 550 s later, 50 s are left, under the margin: replaced.
    *offset.lock().unwrap() = Duration::from_secs(550);
    let second = identity.access_token(SPACE, ENV).await.unwrap();
    assert_ne!(second, first);
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_as_its_reset_header_says() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    server.with(|e| {
        e.script.push_back(Script::reset(1));
        e.script.push_back(Script::RateLimited {
            reset: None,
            retry_after: Some("1"),
        });
    });
    let started = Instant::now();
    server
        .identity(KEY_A)
        .access_token(SPACE, ENV)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn a_rate_limit_longer_than_the_bound_is_an_error_that_says_when() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    server.with(|e| e.script.push_back(Script::reset(120)));
    let error = server
        .identity(KEY_A)
        .access_token(SPACE, ENV)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), AccessTokenErrorKind::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(error.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(server.received().len(), 1, "not retried at once");
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_up_to_the_bound() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    server.with(|e| {
        e.script.push_back(Script::Status(500));
        e.script.push_back(Script::Status(503));
    });
    let identity = server.identity(KEY_A);
    identity.access_token(SPACE, ENV).await.unwrap();
    assert_eq!(server.received().len(), 3, "two failures, then a token");

    let other = server.identity(KEY_A).with_max_attempts(3);
    server.with(|e| {
        e.script.extend([
            Script::Status(502),
            Script::Status(502),
            Script::Status(502),
            Script::Status(502),
        ])
    });
    let error = other.access_token(SPACE, ENV).await.unwrap_err();
    assert_eq!(error.kind(), AccessTokenErrorKind::Unavailable);
    assert_eq!(error.status(), Some(StatusCode::BAD_GATEWAY));
    assert_eq!(server.received().len(), 6, "three attempts, no more");
}

#[tokio::test]
async fn a_refusal_is_final_and_says_why() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    // A key Contentful does not know for the app.
    let error = server
        .identity(KEY_B)
        .access_token(SPACE, ENV)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), AccessTokenErrorKind::Refused);
    assert_eq!(error.status(), Some(StatusCode::FORBIDDEN));
    assert!(
        error.to_string().contains("403") && error.to_string().contains("AccessDenied"),
        "{error}"
    );
    assert_eq!(server.received().len(), 1, "a refusal is not retried");

    // A space environment where the app is not installed.
    let error = server
        .identity(KEY_A)
        .access_token(SPACE, "elsewhere")
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));
    assert!(error.to_string().contains("not installed"), "{error}");
}

#[tokio::test]
async fn waiting_callers_share_a_failure_instead_of_asking_again() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    server.with(|e| e.delay = Duration::from_millis(300));
    let identity = server.identity(KEY_B);
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let identity = identity.clone();
            tokio::spawn(async move { identity.access_token(SPACE, ENV).await })
        })
        .collect();
    for call in calls {
        assert_eq!(
            call.await.unwrap().unwrap_err().kind(),
            AccessTokenErrorKind::Refused
        );
    }
    assert_eq!(server.received().len(), 1);
    // A later call tries again.
    identity.access_token(SPACE, ENV).await.unwrap_err();
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn the_last_good_token_serves_while_a_refresh_fails() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    let (clock, offset) = shifted_clock();
    let identity = server
        .identity(KEY_A)
        .with_clock(clock)
        .with_max_attempts(1);
    let token = identity.access_token(SPACE, ENV).await.unwrap();
    server.with(|e| e.script.extend([Script::Status(500), Script::Status(500)]));
    *offset.lock().unwrap() = Duration::from_secs(570);
    assert_eq!(
        identity.access_token(SPACE, ENV).await.unwrap(),
        token,
        "still valid for 30 s"
    );
    *offset.lock().unwrap() = Duration::from_secs(700);
    let error = identity.access_token(SPACE, ENV).await.unwrap_err();
    assert_eq!(
        error.kind(),
        AccessTokenErrorKind::Unavailable,
        "expired: no token to serve"
    );
}

#[tokio::test]
async fn an_unreachable_host_is_unavailable_after_the_attempts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let identity = AppIdentity::new(APP, AppKey::from_pem(KEY_A).unwrap())
        .with_host(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .with_max_attempts(2);
    let error = identity.access_token(SPACE, ENV).await.unwrap_err();
    assert_eq!(error.kind(), AccessTokenErrorKind::Unavailable);
    assert_eq!(error.status(), None);
    assert!(error.to_string().contains("cannot connect"), "{error}");
}

#[test]
fn hosts_and_ids_that_could_leak_or_redirect_the_token_are_refused() {
    let identity = || AppIdentity::new(APP, AppKey::from_pem(KEY_A).unwrap());
    for host in [
        "http://api.contentful.com",
        "ftp://x",
        "https://api.contentful.com/path",
        "api.contentful.com",
    ] {
        assert!(identity().with_host(host).is_err(), "{host}");
    }
    for host in [
        "https://api.eu.contentful.com",
        "https://api.contentful.com/",
        "http://localhost:8080",
    ] {
        assert!(identity().with_host(host).is_ok(), "{host}");
    }
    assert!(identity().with_key_id("a/b").is_err());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (space, env) in [("..", ENV), (SPACE, "a/../b"), (SPACE, ""), ("s p", ENV)] {
        let error = runtime
            .block_on(identity().access_token(space, env))
            .unwrap_err();
        assert_eq!(
            error.kind(),
            AccessTokenErrorKind::Config,
            "{space:?} {env:?}"
        );
    }
}

#[tokio::test]
async fn no_token_or_key_reaches_debug_output() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    let identity = server.identity(KEY_A);
    let token = identity.access_token(SPACE, ENV).await.unwrap();
    let debug = format!(
        "{token:?} {identity:?} {:?}",
        AppKey::from_pem(KEY_A).unwrap()
    );
    assert!(!debug.contains(token.expose()), "{debug}");
    let body = KEY_A.lines().nth(3).unwrap();
    assert!(!debug.contains(body), "{debug}");
    assert!(debug.contains("expires_at"));
}

fn cli() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("countersign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_an_access_token_or_says_why_not() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A), ("key-b", KEY_B)]).await;
    let dir = std::env::temp_dir().join(format!("countersign-access-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("app.pem");
    std::fs::write(&key_file, KEY_A).unwrap();
    let run = move |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let output = std::process::Command::new(cli())
                .args(&args)
                .output()
                .unwrap();
            (
                output.status.code(),
                String::from_utf8(output.stdout).unwrap(),
                String::from_utf8(output.stderr).unwrap(),
            )
        })
    };
    let args = |key_id: &str, env: &str| -> Vec<String> {
        [
            "contentful",
            "access-token",
            "--app-id",
            APP,
            "--private-key",
            key_file.to_str().unwrap(),
            "--space-id",
            SPACE,
            "--environment-id",
            env,
            "--key-id",
            key_id,
            "--host",
            &server.url,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let (code, stdout, stderr) = run(args("key-a", ENV)).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim().split('.').count(), 3, "{stdout}");

    let (code, stdout, stderr) = run(args("key-b", ENV)).await.unwrap();
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("403") && stderr.contains("AccessDenied"),
        "{stderr}"
    );

    let (code, _, stderr) = run(args("key-a", "no/such")).await.unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    let mut missing = args("key-a", ENV);
    missing[5] = dir.join("absent.pem").to_str().unwrap().to_owned();
    let (code, _, stderr) = run(missing).await.unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
