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
    let port = free_port();
    let mut command = Command::new(binary(name));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
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

#[tokio::test]
async fn marketplace_app_webhooks_good_forged_stale_replayed_oversized() {
    let dir = temp_dir("webhooks");
    let app = start("marketplace-app", &dir, &[("WEBHOOK_BODY_LIMIT", "4096")]).await;
    let key = dev_key(&app);
    install(&app, &key, "bltA").await;

    let body = webhook_body(Duration::from_secs(1), "publish", "bltA", "");
    let (good, replayed) = deliver_twice(&app, &key, &body).await;
    assert_eq!(good, (200, json!({"status": "accepted"})));
    assert_eq!(replayed, (200, json!({"status": "duplicate"})));

    let forged = deliver(
        &app,
        &SigningKey::generate().unwrap(),
        &webhook_body(Duration::from_secs(1), "publish", "bltA", ""),
    )
    .await;
    assert_eq!(forged.status(), 401);
    assert_eq!(
        forged.json::<Value>().await.unwrap()["code"],
        "signature_mismatch"
    );

    let stale = deliver(
        &app,
        &key,
        &webhook_body(Duration::from_secs(2000), "publish", "bltA", ""),
    )
    .await;
    assert_eq!(stale.status(), 401);
    assert_eq!(
        stale.json::<Value>().await.unwrap()["code"],
        "timestamp_expired"
    );

    let big = webhook_body(
        Duration::from_secs(1),
        "publish",
        "bltA",
        &format!(r#","blob":"{}""#, "x".repeat(8000)),
    );
    let oversized = deliver(&app, &key, &big).await;
    assert_eq!(oversized.status(), 413);

    // Only the good delivery was recorded.
    let session = bootstrap(&app, &app_token(&key, "bltA")).await;
    let events = api(&app, &session, "/api/events").await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1);

    // What the layers counted, scraped as Prometheus would.
    let metrics = scrape(&app).await;
    for (series, value) in [
        (
            r#"countersign_verifications_total{provider="contentstack",outcome="accepted",reason="ok"}"#,
            3.0,
        ),
        (
            r#"countersign_verifications_total{provider="contentstack",outcome="rejected",reason="signature_mismatch"}"#,
            1.0,
        ),
        (
            r#"countersign_verifications_total{provider="contentstack",outcome="rejected",reason="timestamp_expired"}"#,
            1.0,
        ),
        (
            r#"countersign_verifications_total{provider="contentstack",outcome="rejected",reason="payload_too_large"}"#,
            1.0,
        ),
        (
            r#"countersign_verifications_total{provider="contentstack_app_token",outcome="accepted",reason="ok"}"#,
            1.0,
        ),
        (
            r#"countersign_contentstack_signature_matches_total{method="rsa",index="0",salt="32"}"#,
            3.0,
        ),
        (r#"countersign_replay_total{outcome="new"}"#, 2.0),
        (r#"countersign_replay_total{outcome="duplicate"}"#, 1.0),
        (
            r#"countersign_verification_seconds_count{provider="contentstack",outcome="accepted"}"#,
            3.0,
        ),
    ] {
        assert_eq!(
            metrics.get(series),
            Some(&value),
            "{series} in\n{metrics:#?}"
        );
    }
}

/// `GET /metrics`, as `series -> value` (Prometheus text format).
async fn scrape(app: &App) -> std::collections::HashMap<String, f64> {
    let response = client()
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "Prometheus text format"
    );
    let text = response.text().await.unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A dev-mode Marketplace App installed on stack `bltA`, which has sent it one `publish` event.
async fn installed_with_one_event(dir: &Path) -> (App, SigningKey) {
    let app = start("marketplace-app", dir, &[]).await;
    let key = dev_key(&app);
    install(&app, &key, "bltA").await;
    let body = webhook_body(Duration::from_secs(1), "publish", "bltA", "");
    assert_eq!(deliver(&app, &key, &body).await.status(), 200);
    (app, key)
}

/// Sends one signed request, then exactly the same again (a replay); returns both answers.
async fn deliver_twice(app: &App, key: &SigningKey, body: &str) -> ((u16, Value), (u16, Value)) {
    let signature = key
        .sign_webhook(body.as_bytes(), SaltLength::Digest)
        .unwrap();
    let send = || async {
        let response = client()
            .post(format!("{}/webhooks/contentstack", app.base))
            .header("x-contentstack-request-signature", signature.clone())
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    let first = send().await;
    (first, send().await)
}

#[tokio::test]
async fn marketplace_app_ui_bootstrap_then_the_api_scoped_to_the_stack() {
    let dir = temp_dir("ui");
    let app = start("marketplace-app", &dir, &[]).await;
    let key = dev_key(&app);
    install(&app, &key, "bltA").await;
    install(&app, &key, "bltB").await;
    for (event, stack) in [("create", "bltA"), ("publish", "bltA"), ("delete", "bltB")] {
        assert_eq!(
            deliver(
                &app,
                &key,
                &webhook_body(Duration::from_secs(1), event, stack, "")
            )
            .await
            .status(),
            200
        );
    }
    let session_a = bootstrap(&app, &app_token(&key, "bltA")).await;
    let session_b = bootstrap(&app, &app_token(&key, "bltB")).await;

    let events_a = api(&app, &session_a, "/api/events").await;
    let names: Vec<&str> = events_a["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["publish", "create"], "newest first, stack A only");
    assert_eq!(events_a["events"][0]["module"], "entry");
    assert!(events_a["events"][0]["triggered_at"].is_string());

    let saved = client()
        .put(format!("{}/api/settings", app.base))
        .bearer_auth(&session_a)
        .json(&json!({"theme": "dark"}))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    assert_eq!(
        api(&app, &session_a, "/api/settings").await["settings"],
        json!({"theme": "dark"})
    );
    // Tenant isolation: stack B sees neither A's settings nor A's events.
    assert_eq!(
        api(&app, &session_b, "/api/settings").await["settings"],
        json!({})
    );
    let events_b = api(&app, &session_b, "/api/events").await;
    assert_eq!(events_b["events"].as_array().unwrap().len(), 1);
    assert_eq!(events_b["events"][0]["event"], "delete");

    // No session, a raw app-token, or no app-token: refused.
    assert_eq!(
        client()
            .get(format!("{}/api/events", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let raw = app_token(&key, "bltA");
    assert_eq!(
        client()
            .get(format!("{}/api/events", app.base))
            .bearer_auth(&raw)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client()
            .get(format!("{}/ui/sidebar", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let not_object = client()
        .put(format!("{}/api/settings", app.base))
        .bearer_auth(&session_a)
        .json(&json!([1]))
        .send()
        .await
        .unwrap();
    assert_eq!(not_object.status(), 422);
}

#[tokio::test]
async fn marketplace_app_data_and_sessions_survive_a_restart() {
    let dir = temp_dir("restart");
    let (app, key) = installed_with_one_event(&dir).await;
    let session = bootstrap(&app, &app_token(&key, "bltA")).await;
    let saved = client()
        .put(format!("{}/api/settings", app.base))
        .bearer_auth(&session)
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    drop(app);

    let app = start("marketplace-app", &dir, &[]).await;
    assert_eq!(
        dev_key(&app).public_key(),
        key.public_key(),
        "the dev key pair is reused"
    );
    assert_eq!(
        api(&app, &session, "/api/events").await["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        api(&app, &session, "/api/settings").await["settings"],
        json!({"n": 1})
    );
}

#[tokio::test]
async fn marketplace_app_basic_auth_and_hmac_from_the_environment() {
    let dir = temp_dir("config");
    let app = start(
        "marketplace-app",
        &dir,
        &[
            ("WEBHOOK_BASIC_AUTH", "hook:s3cret"),
            ("CONTENTSTACK_HMAC_SECRETS", "old-hmac,new-hmac"),
        ],
    )
    .await;
    let body = webhook_body(Duration::from_secs(1), "publish", "bltA", "");
    let hmac = countersign_core::contentstack::HmacSecret::new("new-hmac")
        .unwrap()
        .sign(body.as_bytes(), SystemTime::now());
    let send = |auth: Option<&'static str>| {
        let mut request = client()
            .post(format!("{}/webhooks/contentstack", app.base))
            .header("x-contentstack-hmac-signature", hmac.clone());
        if let Some(auth) = auth {
            request = request.basic_auth("hook", Some(auth));
        }
        request.body(body.clone()).send()
    };
    assert_eq!(send(None).await.unwrap().status(), 401);
    assert_eq!(send(Some("wrong")).await.unwrap().status(), 401);
    // Authentic, but for a stack this app is not installed on.
    assert_eq!(send(Some("s3cret")).await.unwrap().status(), 403);
    let install = installation_body(DEV_APP, "install", "bltA");
    let install_hmac = countersign_core::contentstack::HmacSecret::new("old-hmac")
        .unwrap()
        .sign(install.as_bytes(), SystemTime::now());
    let installed = client()
        .post(format!("{}/webhooks/contentstack", app.base))
        .header("x-contentstack-hmac-signature", install_hmac)
        .basic_auth("hook", Some("s3cret"))
        .body(install)
        .send()
        .await
        .unwrap();
    assert_eq!(installed.status(), 200);
    assert_eq!(send(Some("s3cret")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn marketplace_app_accepts_only_its_own_app_and_installed_stacks() {
    let dir = temp_dir("tenancy");
    let app = start(
        "marketplace-app",
        &dir,
        &[("CONTENTSTACK_APP_UID", "app-ours")],
    )
    .await;
    let key = dev_key(&app);
    let code = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap()["code"].clone(),
        )
    };
    let content = || webhook_body(Duration::from_secs(1), "publish", "bltA", "");

    // A content event of a stack without an installation: refused.
    assert_eq!(
        code(deliver(&app, &key, &content()).await).await,
        (403, json!("stack_not_allowed"))
    );
    // Installation events of another app: refused, and they install nothing.
    for event in ["install", "upgrade", "update"] {
        let theirs = installation_body("app-theirs", event, "bltA");
        assert_eq!(
            code(deliver(&app, &key, &theirs).await).await,
            (403, json!("app_uid_mismatch"))
        );
    }
    assert_eq!(deliver(&app, &key, &content()).await.status(), 403);
    // Our install: the stack is ours.
    let ours = installation_body("app-ours", "install", "bltA");
    assert_eq!(deliver(&app, &key, &ours).await.status(), 200);
    assert_eq!(deliver(&app, &key, &content()).await.status(), 200);

    // App-tokens of another app: refused; ours: a session.
    let response = client()
        .get(format!(
            "{}/ui/sidebar?app-token={}",
            app.base,
            app_token_of("app-theirs", &key, "bltA")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (403, json!("app_token_app_mismatch")));
    let ours = app_token_of("app-ours", &key, "bltA");
    let session = bootstrap(&app, &ours).await;
    // The example spends app-tokens: the same URL again opens nothing.
    let again = client()
        .get(format!("{}/ui/sidebar?app-token={ours}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(code(again).await, (401, json!("app_token_reused")));
    assert_eq!(
        api(&app, &session, "/api/events").await["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Uninstalled: the stack's deliveries are refused again.
    let uninstall = installation_body("app-ours", "uninstall", "bltA");
    assert_eq!(deliver(&app, &key, &uninstall).await.status(), 200);
    assert_eq!(deliver(&app, &key, &content()).await.status(), 403);
}

#[tokio::test]
async fn marketplace_app_records_a_delivery_once_even_when_the_replay_store_forgot_it() {
    let dir = temp_dir("idempotent");
    let app = start("marketplace-app", &dir, &[]).await;
    let key = dev_key(&app);
    install(&app, &key, "bltA").await;
    let body = webhook_body(Duration::from_secs(1), "publish", "bltA", "");
    assert_eq!(deliver(&app, &key, &body).await.status(), 200);
    // A restart empties the in-memory replay store: the same delivery, signed afresh, is
    // handled again, and the handler's write by delivery id changes nothing.
    drop(app);
    let app = start("marketplace-app", &dir, &[]).await;
    let again = deliver(&app, &key, &body).await;
    assert_eq!(again.status(), 200);
    assert!(
        !again.headers().contains_key("x-countersign-replay"),
        "the store forgot it"
    );
    let session = bootstrap(&app, &app_token(&key, "bltA")).await;
    let events = api(&app, &session, "/api/events").await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
}

const SECRET: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const WEBHOOK_SECRET: &str = "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww";

async fn contentful_send(
    app: &App,
    path: &str,
    body: &str,
    context: &Context,
    idempotency: Option<&str>,
) -> reqwest::Response {
    contentful_send_signed(app, SECRET, path, body, context, idempotency).await
}

/// [`contentful_send`], signed with `secret`.
async fn contentful_send_signed(
    app: &App,
    secret: &str,
    path: &str,
    body: &str,
    context: &Context,
    idempotency: Option<&str>,
) -> reqwest::Response {
    let mut request = RequestToSign::new(http::Method::POST, path).with_body(body.as_bytes());
    let mut extra = vec![("content-type", "application/json".to_owned())];
    if let Some(key) = idempotency {
        extra.push(("x-contentful-idempotency-key", key.to_owned()));
    }
    for (name, value) in &extra {
        request = request.with_header(name, value);
    }
    let signed = sign(
        &SigningSecret::new(secret).unwrap(),
        &request,
        SystemTime::now(),
        context,
    )
    .unwrap();
    let mut http = client().post(format!("{}{path}", app.base));
    for (name, value) in extra
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .chain(signed.iter())
    {
        http = http.header(name, value);
    }
    http.body(body.to_owned()).send().await.unwrap()
}

#[tokio::test]
async fn contentful_app_webhooks_events_and_actions() {
    let dir = temp_dir("contentful");
    let app = start(
        "contentful-app",
        &dir,
        &[
            ("CONTENTFUL_SIGNING_SECRETS", SECRET),
            (
                "CONTENTFUL_WEBHOOK_SECRETS",
                &format!("space-1={WEBHOOK_SECRET}"),
            ),
        ],
    )
    .await;
    for path in ["/contentful/webhooks", "/contentful/app-events"] {
        let response = contentful_send(
            &app,
            path,
            r#"{"sys":{"id":"e1"}}"#,
            &Context::default(),
            Some(path),
        )
        .await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"status": "accepted", "topic": null, "handling": "untyped"})
        );
        // A retry with a fresh signature and the same idempotency key is acknowledged.
        let retry = contentful_send(
            &app,
            path,
            r#"{"sys":{"id":"e1"}}"#,
            &Context::default(),
            Some(path),
        )
        .await;
        assert_eq!(
            retry.json::<Value>().await.unwrap(),
            json!({"status": "duplicate"})
        );
    }
    let forged = client()
        .post(format!("{}/contentful/webhooks", app.base))
        .header("x-contentful-signature", "0".repeat(64))
        .header(
            "x-contentful-signed-headers",
            "x-contentful-signed-headers,x-contentful-timestamp",
        )
        .header("x-contentful-timestamp", "1700000000000")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    let context = Context {
        space_id: Some("space-1".into()),
        environment_id: Some("master".into()),
        user_id: Some("user-7".into()),
        app_id: Some("app-3".into()),
        crn: None,
    };
    let action = contentful_send(&app, "/contentful/actions/sync", "{}", &context, None).await;
    assert_eq!(action.status(), 200);
    assert_eq!(
        action.json::<Value>().await.unwrap(),
        json!({"action": "sync", "space_id": "space-1", "environment_id": "master", "user_id": "user-7", "app_id": "app-3"})
    );
    let no_user = Context {
        user_id: None,
        ..context.clone()
    };
    let refused = contentful_send(&app, "/contentful/actions/sync", "{}", &no_user, None).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["code"],
        "request_kind_not_allowed"
    );
    // What a user had signed is no event or webhook.
    for path in ["/contentful/webhooks", "/contentful/app-events"] {
        let refused = contentful_send(&app, path, "{}", &context, Some("k")).await;
        assert_eq!(refused.status(), 403, "{path}");
    }
    // Space 1's webhook secret signs space 1's webhooks, and no other space's.
    for (space, status) in [("space-1", 200), ("space-2", 401)] {
        let context = Context {
            space_id: Some(space.into()),
            ..Context::default()
        };
        let path = "/contentful/webhooks";
        let answer =
            contentful_send_signed(&app, WEBHOOK_SECRET, path, "{}", &context, Some(space)).await;
        assert_eq!(answer.status(), status, "{space}");
    }

    let metrics = scrape(&app).await;
    for (series, value) in [
        (
            r#"countersign_verifications_total{provider="contentful",outcome="accepted",reason="ok"}"#,
            6.0,
        ),
        (
            r#"countersign_verifications_total{provider="contentful",outcome="rejected",reason="timestamp_expired"}"#,
            1.0,
        ),
        (
            r#"countersign_verifications_total{provider="contentful",outcome="rejected",reason="request_kind_not_allowed"}"#,
            3.0,
        ),
        (
            r#"countersign_contentful_secret_matches_total{index="0"}"#,
            5.0,
        ),
        // Space 1's webhook secret, after the app's.
        (
            r#"countersign_contentful_secret_matches_total{index="1"}"#,
            1.0,
        ),
        (r#"countersign_replay_total{outcome="duplicate"}"#, 2.0),
        (r#"countersign_replay_total{outcome="new"}"#, 4.0),
    ] {
        assert_eq!(
            metrics.get(series),
            Some(&value),
            "{series} in\n{metrics:#?}"
        );
    }
}

#[tokio::test]
async fn contentful_app_dev_mode_generates_and_keeps_a_secret() {
    let dir = temp_dir("contentful-dev");
    let app = start("contentful-app", &dir, &[]).await;
    let secret = std::fs::read_to_string(dir.join("contentful-secret")).unwrap();
    assert!(SigningSecret::new(secret.trim()).is_ok());
    // The secret and its directory are this user's only (the secret used to be 0644).
    assert_eq!(mode(&dir.join("contentful-secret")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    drop(app);
    let _again = start("contentful-app", &dir, &[]).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("contentful-secret")).unwrap(),
        secret
    );
}

#[tokio::test]
async fn in_headless_chromium_a_framed_ui_location_calls_the_api_with_its_session() {
    let dir = temp_dir("browser");
    let (app, key) = installed_with_one_event(&dir).await;
    // The UI on origin http://localhost:<port>, the host page on http://127.0.0.1:<other port>.
    let ui = format!(
        "{}/ui/sidebar?app-token={}",
        app.base.replace("127.0.0.1", "localhost"),
        app_token(&key, "bltA")
    );
    let host_page = format!(
        r#"<!doctype html><title>host</title><iframe src="{ui}" width="800" height="600"></iframe>"#
    );
    let host = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(host_page) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, host).await.unwrap() });

    let input = json!({"host_url": format!("http://{host_addr}/"), "frame_path": "/ui/sidebar"});
    let report =
        tokio::task::spawn_blocking(move || countersign_tests::run_node("browser.mjs", &input))
            .await
            .unwrap();
    assert_eq!(report["status"], "loaded 1 event(s)", "{report}");
    assert_eq!(report["settings"], "{}");
    assert!(
        report["events"][0]
            .as_str()
            .unwrap()
            .ends_with("entry publish"),
        "{report}"
    );
    assert_ne!(
        report["origin"].as_str().unwrap(),
        format!("http://{host_addr}"),
        "framed from another origin"
    );
}

/// The status and reason code of a refusal.
async fn problem_code(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (
        status,
        response.json::<Value>().await.unwrap()["code"].clone(),
    )
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn marketplace_app_requires_the_webhooks_custom_headers_from_the_environment() {
    let dir = temp_dir("required-headers");
    let app = start(
        "marketplace-app",
        &dir,
        &[(
            "WEBHOOK_REQUIRED_HEADERS",
            "X-Hook-Token: t0ken; X-Tenant: acme",
        )],
    )
    .await;
    let key = dev_key(&app);
    let install = installation_body(DEV_APP, "install", "bltA");
    let send = |headers: &'static [(&'static str, &'static str)]| {
        let mut request = client()
            .post(format!("{}/webhooks/contentstack", app.base))
            .header("content-type", "application/json")
            .header(
                "x-contentstack-request-signature",
                key.sign_webhook(install.as_bytes(), SaltLength::Digest)
                    .unwrap(),
            );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(install.clone()).send()
    };
    // Authentic, but without the custom headers: refused before the signature is looked at.
    assert_eq!(
        problem_code(send(&[]).await.unwrap()).await,
        (401, json!("header_missing"))
    );
    assert_eq!(
        problem_code(
            send(&[("x-hook-token", "t0ken"), ("x-tenant", "other")])
                .await
                .unwrap()
        )
        .await,
        (401, json!("header_mismatch"))
    );
    let response = send(&[("x-hook-token", "t0ken"), ("x-tenant", "acme")])
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A header with an empty value in the configuration: the app refuses to start.
    let output = std::process::Command::new(binary("marketplace-app"))
        .env_clear()
        .env("DATA_DIR", temp_dir("required-headers-empty"))
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("WEBHOOK_REQUIRED_HEADERS", "X-Hook-Token:")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("empty"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn marketplace_app_guards_its_files_its_frames_and_its_connections() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = temp_dir("hardened");
    let (app, key) = installed_with_one_event(&dir).await;
    // Keys, secrets and the database: this user's only.
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("dev-keys")), 0o700);
    assert_eq!(mode(&dir.join("dev-keys/private.pem")), 0o600);
    assert_eq!(mode(&dir.join("session-secret")), 0o600);
    assert_eq!(mode(&dir.join("marketplace-app.sqlite3")), 0o600);

    // Only Contentstack, and this machine in dev mode, may frame a UI page.
    let response = client()
        .get(format!(
            "{}/ui/sidebar?app-token={}",
            app.base,
            app_token(&key, "bltA")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        policy
            .starts_with("frame-ancestors https://app.contentstack.com https://*.contentstack.com"),
        "{policy}"
    );

    // A client that trickles its request head is cut off after the header-read timeout.
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection stayed open for 30 s");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn marketplace_app_on_postgresql_is_shared_answers_503_while_it_is_down_and_recovers() {
    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let url = pg.url();
    let dir = temp_dir("postgres-a");
    let first = start("marketplace-app", &dir, &[("DATABASE_URL", &url)]).await;
    let key = dev_key(&first);
    install(&first, &key, "bltP").await;

    // A second instance with its own DATA_DIR shares the records: the installation is there.
    let public = dir.join("dev-keys/public.pem");
    let second_dir = temp_dir("postgres-b");
    let second = start(
        "marketplace-app",
        &second_dir,
        &[
            ("DATABASE_URL", &url),
            ("CONTENTSTACK_PUBLIC_KEY", public.to_str().unwrap()),
            ("CONTENTSTACK_APP_UID", "dev-app"),
        ],
    )
    .await;
    let one = webhook_body(Duration::from_secs(1), "publish", "bltP", r#","n":1"#);
    assert_eq!(deliver(&second, &key, &one).await.status(), 200);
    // The same delivery at the other instance (its replay store never saw it): acknowledged,
    // and recorded once, by its delivery id in the shared database.
    assert_eq!(deliver(&first, &key, &one).await.status(), 200);

    // PostgreSQL goes down: 503, so that Contentstack retries.
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let two = webhook_body(Duration::from_secs(1), "publish", "bltP", r#","n":2"#);
    let refused = deliver(&first, &key, &two).await;
    assert_eq!(refused.status(), 503);

    // It comes back: the retry (signed afresh) is recorded, with no restart of the app.
    let pg = tokio::task::spawn_blocking(move || {
        pg.resume();
        pg
    })
    .await
    .unwrap();
    let mut status = 0;
    for _ in 0..50 {
        status = deliver(&first, &key, &two).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200, "the app recovers by itself");

    let session = bootstrap(&second, &app_token(&key, "bltP")).await;
    let events = api(&second, &session, "/api/events").await;
    assert_eq!(
        events["events"].as_array().unwrap().len(),
        2,
        "each delivery once: {events}"
    );
    drop(pg);
}

/// What the local HTTPS key server does.
#[derive(Clone, Copy, Debug)]
enum KeyServer {
    Serve(&'static str),
    Down,
    Garbage,
    Slow(&'static str),
}

/// An HTTPS well-known endpoint with a certificate from a local CA; returns the mode to
/// change, the key URL and the CA's PEM.
async fn https_key_server() -> (std::sync::Arc<std::sync::Mutex<KeyServer>>, String, String) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let ca = countersign_tests::LocalCa::new();

    let mode = std::sync::Arc::new(std::sync::Mutex::new(KeyServer::Down));
    let shared = std::sync::Arc::clone(&mode);
    let app = axum::Router::new().route(
        "/.well-known/public-keys.json",
        get(move || {
            let mode = *shared.lock().unwrap();
            async move {
                match mode {
                    KeyServer::Serve(document) => (StatusCode::OK, document.to_owned()),
                    KeyServer::Down => (StatusCode::SERVICE_UNAVAILABLE, "maintenance".to_owned()),
                    KeyServer::Garbage => (StatusCode::OK, "<html>not a key</html>".to_owned()),
                    KeyServer::Slow(document) => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        (StatusCode::OK, document.to_owned())
                    }
                }
            }
        }),
    );
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        ca.certificate.into_bytes(),
        ca.key.into_bytes(),
    )
    .await
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum_server::from_tcp_rustls(listener, tls)
            .serve(app.into_make_service())
            .await
    });
    let url = format!("https://localhost:{port}/.well-known/public-keys.json");
    (mode, url, ca.ca)
}

const KEYS_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/countersign-core/tests/data/keys"
);
const KEYS_JSON_A: &str =
    include_str!("../../crates/countersign-core/tests/data/keys/contentstack-a.public-keys.json");
const KEYS_JSON_B: &str =
    include_str!("../../crates/countersign-core/tests/data/keys/contentstack-b.public-keys.json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketplace_app_rides_out_key_server_faults_over_https() {
    let (mode, url, ca) = https_key_server().await;
    let set = |m: KeyServer| *mode.lock().unwrap() = m;
    let dir = temp_dir("key-server");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let app = start(
        "marketplace-app",
        &dir,
        &[
            ("CONTENTSTACK_KEYS_URL", &url),
            ("CONTENTSTACK_KEYS_CA", ca_file.to_str().unwrap()),
            ("CONTENTSTACK_KEYS_TIMEOUT_SECS", "1"),
            ("CONTENTSTACK_KEYS_REFETCH_SECS", "0"),
        ],
    )
    .await;
    let key_a = SigningKey::from_file(format!("{KEYS_DIR}/contentstack-a.private.pem")).unwrap();
    let key_b = SigningKey::from_file(format!("{KEYS_DIR}/contentstack-b.private.pem")).unwrap();
    let body = |n: u32| {
        webhook_body(
            Duration::from_secs(1),
            "publish",
            "bltK",
            &format!(r#","n":{n}"#),
        )
    };
    let code = |response: reqwest::Response| async move { problem_code(response).await };

    // No key yet, the server down: 503, so that Contentstack retries.
    let (status, problem) = code(deliver(&app, &key_a, &body(1)).await).await;
    assert_eq!((status, problem.as_str()), (503, Some("key_unavailable")));

    // The server comes back: the app recovers on its own.
    set(KeyServer::Serve(KEYS_JSON_A));
    let mut status = 0;
    for _ in 0..30 {
        status = deliver(&app, &key_a, &body(1)).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200, "recovered once the key server answered");

    // Down, garbage, slow: the last good key keeps serving; a signature by another key makes
    // it ask (and fail), and is refused.
    for (n, fault) in [
        (2, KeyServer::Down),
        (3, KeyServer::Garbage),
        (4, KeyServer::Slow(KEYS_JSON_B)),
    ] {
        set(fault);
        assert_eq!(
            deliver(&app, &key_a, &body(n)).await.status(),
            200,
            "{fault:?}"
        );
        let started = std::time::Instant::now();
        let (status, problem) = code(deliver(&app, &key_b, &body(n + 10)).await).await;
        assert_eq!(
            (status, problem.as_str()),
            (401, Some("signature_mismatch")),
            "{fault:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{fault:?}: bounded by the timeout"
        );
    }

    // A rotation: the new key is picked up after the first signature the old one rejects.
    set(KeyServer::Serve(KEYS_JSON_B));
    assert_eq!(deliver(&app, &key_b, &body(5)).await.status(), 200);
}
