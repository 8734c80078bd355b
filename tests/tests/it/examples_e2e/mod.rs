//! The example backends as processes, driven over real HTTP: what a newcomer runs first.
//!
//! `cargo test --workspace` builds their binaries before any test runs; these tests find them
//! next to the test binary.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use countersign_core::contentful::{Context, RequestToSign, SigningSecret, sign};
use countersign_core::contentstack::{
    APP_TOKEN_LIFETIME, INSTALLATION_MODULE, SaltLength, SigningKey, WebhookBody, mint_app_token,
};
use serde_json::{Value, json};

/// A running example server, stopped when dropped.
struct App {
    child: Child,
    base: String,
    data_dir: PathBuf,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary(name: &str) -> PathBuf {
    // target/<profile>/deps/<test binary> -> target/<profile>/<name>
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is built by `cargo test --workspace`",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("countersign-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn start(name: &str, data_dir: &Path, env: &[(&str, &str)]) -> App {
    start_on(free_port(), name, data_dir, env).await
}

/// [`start`] on `port`: an instance started again where the providers send.
async fn start_on(port: u16, name: &str, data_dir: &Path, env: &[(&str, &str)]) -> App {
    let mut command = Command::new(binary(name));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", data_dir)
        .env("RUST_LOG", "warn");
    // What the app prints, kept in `DATA_DIR/app.log` for tests that read it.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("app.log"))
        .unwrap();
    command
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    for (key, value) in env {
        command.env(key, value);
    }
    let app = App {
        child: command.spawn().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
        data_dir: data_dir.to_owned(),
    };
    for _ in 0..150 {
        let health = client().get(format!("{}/healthz", app.base)).send().await;
        if health.is_ok_and(|response| response.status() == 200) {
            return app;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} did not start");
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn dev_key(app: &App) -> SigningKey {
    SigningKey::from_file(app.data_dir.join("dev-keys/private.pem")).unwrap()
}

fn webhook_body(age: Duration, event: &str, stack: &str, extra: &str) -> String {
    let data = serde_json::from_str(&format!(r#"{{"entry":{{"uid":"blt1"}}{extra}}}"#)).unwrap();
    WebhookBody::new("entry", event)
        .with_api_key(stack)
        .with_data(&data)
        .to_json(SystemTime::now() - age)
}

async fn deliver(app: &App, key: &SigningKey, body: &str) -> reqwest::Response {
    client()
        .post(format!("{}/webhooks/contentstack", app.base))
        .header("content-type", "application/json")
        .header(
            "x-contentstack-request-signature",
            key.sign_webhook(body.as_bytes(), SaltLength::Digest)
                .unwrap(),
        )
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// The app uid dev mode binds the example to.
const DEV_APP: &str = "dev-app";

fn app_token_of(app_uid: &str, key: &SigningKey, stack: &str) -> String {
    let claims = json!({
        "app_uid": app_uid, "installation_uid": format!("inst-{stack}"), "organization_uid": "org", "user_uid": "user",
        "stack_api_key": stack,
        // Each token its own: the example spends app-tokens (single use).
        "jti": countersign::random_hex(8).unwrap(),
    });
    mint_app_token(key, &claims, SystemTime::now(), APP_TOKEN_LIFETIME).unwrap()
}

fn app_token(key: &SigningKey, stack: &str) -> String {
    app_token_of(DEV_APP, key, stack)
}

/// An installation event of `app_uid` for `stack`.
fn installation_body(app_uid: &str, event: &str, stack: &str) -> String {
    let data = json!({"app_installation": {
        "app_uid": app_uid, "installation_uid": format!("inst-{stack}"),
        "target": {"type": "stack", "uid": stack},
    }});
    WebhookBody::new(INSTALLATION_MODULE, event)
        .with_api_key(stack)
        .with_data(&data)
        .to_json(SystemTime::now())
}

/// Installs the dev app on `stack`, as Contentstack's installation event would.
async fn install(app: &App, key: &SigningKey, stack: &str) {
    let response = deliver(app, key, &installation_body(DEV_APP, "install", stack)).await;
    assert_eq!(response.status(), 200, "install on {stack}");
}

/// Opens the UI location with an app-token; returns the session the page embeds.
async fn bootstrap(app: &App, token: &str) -> String {
    let response = client()
        .get(format!("{}/ui/sidebar?app-token={token}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let html = response.text().await.unwrap();
    let marker = r#"<meta name="app-session" content=""#;
    let start = html.find(marker).unwrap() + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

async fn api(app: &App, session: &str, path: &str) -> Value {
    let response = client()
        .get(format!("{}{path}", app.base))
        .bearer_auth(session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// The session's stack's events once at least `n` are recorded: the inbox's workers record a
/// delivery after its answer. For at most 45 s: a killed instance's worker may have held the
/// delivery on a lease (30 s) that must lapse first.
async fn events_when(app: &App, session: &str, n: usize) -> Value {
    let mut events = Value::Null;
    for _ in 0..450 {
        events = api(app, session, "/api/events").await;
        if events["events"].as_array().is_some_and(|e| e.len() >= n) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} events recorded within 45 s: {events}");
}

use marketplace_guards::{mode, problem_code};
use marketplace_webhooks::{installed_with_one_event, scrape};

mod browser;
mod contentful;
mod lambda;
mod marketplace_faults;
mod marketplace_guards;
mod marketplace_oauth;
mod marketplace_ui;
mod marketplace_webhooks;
mod reconcile;
