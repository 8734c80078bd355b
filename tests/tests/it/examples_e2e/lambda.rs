//! The Lambda example (`examples/lambda-app`) as a function: its binary started as Lambda
//! starts one, driven through a local Runtime API by `lambda_http::run` itself. Requests of
//! every trigger kind, signed by our signer and by the toolkit's `signRequest` (Contentful) for
//! the path and query their sender saw, each verify and are kept once in PostgreSQL; the
//! tampered ones are refused with the documented reasons; the worker function drains the
//! inbox; SQLite is refused in a function unless insisted on.

use base64::Engine as _;
use countersign::contentful::SigningSecret;
use countersign::contentstack::{HmacSecret, WebhookBody};
use countersign::testing::TestKit;
use countersign::testing::lambda::LambdaEvent;
use countersign_tests::lambda_runtime_api::RuntimeApi;
use countersign_tests::run_node;

use super::*;

const STACK_A: &str = "blt00000000000000a";
const STACK_B: &str = "blt00000000000000b";
const SECRET_A: &str = "stack-a-webhook-secret";
const SECRET_B: &str = "stack-b-webhook-secret";
/// A stack with no secret and not named for RSA: not this app's.
const STACK_C: &str = "blt00000000000000c";
/// The space whose admins chose this webhook secret: it signs that space's webhooks only.
const ATTACKER_SPACE: &str = "attacker-space";
const ATTACKER_SECRET: &str = "attacker-chosen-webhook-secret-0123456789abcdefghijklmnopqrstuvw";
const BODY: &str = r#"{"sys":{"id":"entry-1","type":"Entry"}}"#;
const TOPIC: &str = "ContentManagement.Entry.publish";

/// The example's binary, started as Lambda starts a function, stopped when dropped.
struct Function {
    process: App,
    api: RuntimeApi,
}

impl Function {
    /// The function `name` with `env` besides what Lambda sets.
    async fn start(name: &str, env: &[(&str, &str)]) -> Self {
        let api = RuntimeApi::start().await;
        let dir = temp_dir(&format!("lambda-{name}"));
        let mut command = Command::new(binary("lambda-app"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn");
        for (key, value) in api.env(name) {
            command.env(key, value);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let log = std::fs::File::create(dir.join("app.log")).unwrap();
        command
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        let process = App {
            child: command.spawn().unwrap(),
            base: String::new(),
            data_dir: dir,
        };
        Self { process, api }
    }

    /// Invokes the function with `event`: the status and the problem's code (or the status
    /// field of an acceptance) of its answer.
    async fn call(&self, event: &Value) -> (u16, String) {
        let answer = self.api.invoke(event).await.unwrap();
        let status = u16::try_from(answer["statusCode"].as_u64().unwrap()).unwrap();
        let body = answer["body"].as_str().unwrap_or_default();
        let body = if answer["isBase64Encoded"] == true {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap(),
            )
            .unwrap()
        } else {
            body.to_owned()
        };
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let code = body["code"].as_str().or(body["status"].as_str());
        (status, code.unwrap_or_default().to_owned())
    }
}

/// A Contentful app event to `target`, with idempotency key `key`, as our signer signs it.
fn ours(target: &str, key: &str) -> http::Request<axum::body::Body> {
    TestKit::new().contentful_app_event(target, TOPIC, BODY, key)
}

/// The same, as `@contentful/node-apps-toolkit`'s `signRequest` signs them, in one run.
fn toolkits(requests: &[(&str, &str)]) -> Vec<http::Request<axum::body::Body>> {
    let kit = TestKit::new();
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let own = |key: &str| {
        vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-contentful-topic".to_owned(), TOPIC.to_owned()),
            ("x-contentful-idempotency-key".to_owned(), key.to_owned()),
        ]
    };
    let cases: Vec<Value> = requests
        .iter()
        .map(|(target, key)| {
            json!({
                "secret": kit.contentful_secret().expose(), "timestamp": now,
                "method": "POST", "path": target, "headers": own(key), "body": BODY,
                "context": {"spaceId": TestKit::SPACE, "envId": TestKit::ENVIRONMENT},
            })
        })
        .collect();
    let signed = run_node("contentful-sign.mjs", &json!({ "cases": cases }));
    requests
        .iter()
        .zip(signed["signed"].as_array().unwrap())
        .map(|((target, key), headers)| {
            let mut request = http::Request::post(*target);
            for (name, value) in own(key) {
                request = request.header(name, value);
            }
            for (name, value) in headers.as_object().unwrap() {
                request = request.header(name, value.as_str().unwrap());
            }
            request.body(axum::body::Body::from(BODY)).unwrap()
        })
        .collect()
}

/// A Contentstack webhook of `stack` to `target`, signed with `secret` (HMAC) or, without
/// one, with the test kit's RSA key.
fn contentstack(
    target: &str,
    stack: &str,
    secret: Option<&str>,
) -> http::Request<axum::body::Body> {
    let body = WebhookBody::new("entry", "publish")
        .with_api_key(stack)
        .with_data(
            &json!({"entry": {"uid": format!("blt-{}", countersign::random_hex(6).unwrap())}}),
        );
    match secret {
        Some(secret) => TestKit::new()
            .with_contentstack_hmac_secret(HmacSecret::new(secret).unwrap())
            .contentstack_hmac_webhook(target, &body),
        None => TestKit::new().contentstack_webhook(target, &body),
    }
}

/// The example's settings, with `extra`.
fn settings<'a>(
    key_file: &'a str,
    database: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    static SECRETS: std::sync::OnceLock<[String; 3]> = std::sync::OnceLock::new();
    let [contentful, webhooks, contentstack] = SECRETS.get_or_init(|| {
        let kit = TestKit::new();
        [
            kit.contentful_secret().expose().to_owned(),
            format!(
                "{}={},{ATTACKER_SPACE}={ATTACKER_SECRET}",
                TestKit::SPACE,
                kit.contentful_webhook_secret().expose()
            ),
            format!("{STACK_A}={SECRET_A},{STACK_B}={SECRET_B}"),
        ]
    });
    let mut settings = vec![
        ("CONTENTFUL_SIGNING_SECRETS", contentful.as_str()),
        ("CONTENTFUL_WEBHOOK_SECRETS", webhooks.as_str()),
        ("CONTENTSTACK_HMAC_SECRETS", contentstack.as_str()),
        ("CONTENTSTACK_PUBLIC_KEY", key_file),
        // RSA-signed webhooks of stack A only: Contentstack's key signs every customer's.
        ("CONTENTSTACK_STACKS", STACK_A),
        ("DATABASE_URL", database),
    ];
    settings.extend_from_slice(extra);
    settings
}

#[tokio::test]
async fn a_lambda_function_verifies_every_trigger_kind_and_keeps_each_delivery_once() {
    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let url = pg.url();
    let dir = temp_dir("lambda-keys");
    let key_file = dir.join("contentstack.pem");
    let pem = TestKit::new()
        .contentstack_signing_key()
        .public_key()
        .to_pkcs1_pem();
    std::fs::write(&key_file, pem).unwrap();
    let key_file = key_file.to_str().unwrap();

    // One function per path prefix: none (HTTP API `$default`, Function URL, ALB), a stage
    // (REST API `execute-api`, HTTP API named stage), a custom domain's base path.
    let plain = Function::start("plain", &settings(key_file, &url, &[])).await;
    let staged = Function::start(
        "staged",
        &settings(key_file, &url, &[("LAMBDA_PATH_PREFIX", "/prod")]),
    )
    .await;
    let mapped = Function::start(
        "mapped",
        &settings(key_file, &url, &[("LAMBDA_PATH_PREFIX", "/api")]),
    )
    .await;

    // Contentful: each kind twice, once per signer, for the path and query the sender saw.
    let kinds: Vec<(&str, LambdaEvent, &Function, &str)> = vec![
        (
            "v1 execute-api",
            LambdaEvent::rest_api("prod"),
            &staged,
            "/prod/contentful/events",
        ),
        (
            "v1 custom domain",
            LambdaEvent::rest_api_custom_domain("/api", "prod"),
            &mapped,
            "/api/contentful/events",
        ),
        (
            "v2 $default",
            LambdaEvent::http_api("$default"),
            &plain,
            "/contentful/events?x=1&a=%2F",
        ),
        (
            "v2 named stage",
            LambdaEvent::http_api("prod"),
            &staged,
            "/prod/contentful/events?b=2&a=1",
        ),
        (
            "Function URL, base64 body",
            LambdaEvent::function_url().with_base64_body(),
            &plain,
            "/contentful/events?k=v",
        ),
        ("ALB", LambdaEvent::alb(), &plain, "/contentful/events"),
    ];
    let toolkit_requests: Vec<(String, String)> = kinds
        .iter()
        .enumerate()
        .map(|(i, (_, _, _, target))| ((*target).to_owned(), format!("toolkit-{i}")))
        .collect();
    let pairs: Vec<(&str, &str)> = toolkit_requests
        .iter()
        .map(|(t, k)| (t.as_str(), k.as_str()))
        .collect();
    let mut by_toolkit = toolkits(&pairs).into_iter();
    let mut accepted = 0;
    for (i, (name, kind, function, target)) in kinds.iter().enumerate() {
        for (signer, request) in [
            ("ours", ours(target, &format!("ours-{i}"))),
            ("toolkit", by_toolkit.next().unwrap()),
        ] {
            let event = kind.event(request).await;
            assert_eq!(
                function.call(&event).await,
                (200, "accepted".to_owned()),
                "{name}, signed by {signer}"
            );
            accepted += 1;
            // Its retry, the same delivery, is kept once.
            assert_eq!(
                function.call(&event).await,
                (200, "duplicate".to_owned()),
                "{name}, signed by {signer}, again"
            );
        }
    }

    // A space's webhook, signed with that space's own secret.
    let webhook = TestKit::new().contentful_webhook("/contentful/events", TOPIC, BODY);
    let webhook = LambdaEvent::function_url().event(webhook).await;
    assert_eq!(plain.call(&webhook).await, (200, "accepted".to_owned()));
    accepted += 1;

    // Contentstack: each kind twice, HMAC (each stack its own secret) and RSA.
    let webhooks: Vec<(&str, LambdaEvent, &Function, &str)> = vec![
        (
            "v1 execute-api",
            LambdaEvent::rest_api("prod"),
            &staged,
            "/prod/webhooks/contentstack",
        ),
        (
            "v1 custom domain",
            LambdaEvent::rest_api_custom_domain("/api", "prod"),
            &mapped,
            "/api/webhooks/contentstack",
        ),
        (
            "v2 named stage",
            LambdaEvent::http_api("prod"),
            &staged,
            "/prod/webhooks/contentstack",
        ),
        (
            "Function URL",
            LambdaEvent::function_url(),
            &plain,
            "/webhooks/contentstack",
        ),
        // Contentstack signs the body alone: a query the event loses changes nothing.
        (
            "ALB, a query",
            LambdaEvent::alb(),
            &plain,
            "/webhooks/contentstack?token=1",
        ),
    ];
    for (name, kind, function, target) in &webhooks {
        for (signer, request) in [
            (
                "HMAC of stack A",
                contentstack(target, STACK_A, Some(SECRET_A)),
            ),
            (
                "HMAC of stack B",
                contentstack(target, STACK_B, Some(SECRET_B)),
            ),
            ("RSA", contentstack(target, STACK_A, None)),
        ] {
            let event = kind.event(request).await;
            assert_eq!(
                function.call(&event).await,
                (200, "accepted".to_owned()),
                "{name}, {signer}"
            );
            accepted += 1;
        }
    }

    // Refused, each for what it is.
    let v1 = LambdaEvent::rest_api("prod");
    let v2 = LambdaEvent::http_api("$default");
    let mut reordered = v2.event(ours("/contentful/events?b=2&a=1", "r-1")).await;
    reordered["rawQueryString"] = json!("a=1&b=2");
    let mut restaged = v1.event(ours("/prod/contentful/events", "r-2")).await;
    restaged["requestContext"]["path"] = json!("/test/contentful/events");
    let mut unmapped = LambdaEvent::rest_api_custom_domain("/api", "prod")
        .event(toolkits(&[("/contentful/events", "r-3")]).remove(0))
        .await;
    unmapped["requestContext"]["path"] = json!("/api/contentful/events");
    let refusals = [
        (
            "v2, a reordered query",
            &plain,
            reordered,
            (401, "signature_mismatch"),
        ),
        (
            "v1, signed without its base path",
            &mapped,
            unmapped,
            (401, "signature_mismatch"),
        ),
        // Another stage's request is not this function's.
        (
            "v1, another stage",
            &staged,
            restaged,
            (404, "lambda_prefix_missing"),
        ),
        (
            "a Function URL beside the stage's URL",
            &staged,
            LambdaEvent::function_url()
                .event(ours("/contentful/events", "r-6"))
                .await,
            (404, "lambda_prefix_missing"),
        ),
        (
            "v1, a query the event lost",
            &staged,
            v1.event(ours("/prod/contentful/events?x=1", "r-4")).await,
            (400, "lambda_query_lost"),
        ),
        (
            "ALB, a query the event lost",
            &plain,
            LambdaEvent::alb()
                .event(toolkits(&[("/contentful/events?x=1", "r-5")]).remove(0))
                .await,
            (400, "lambda_query_lost"),
        ),
        (
            "stack A's secret signing for stack B",
            &plain,
            LambdaEvent::function_url()
                .event(contentstack(
                    "/webhooks/contentstack",
                    STACK_B,
                    Some(SECRET_A),
                ))
                .await,
            (401, "signature_mismatch"),
        ),
        (
            "RSA-signed, of a stack not this app's",
            &plain,
            LambdaEvent::function_url()
                .event(contentstack("/webhooks/contentstack", STACK_C, None))
                .await,
            (403, "stack_not_allowed"),
        ),
        (
            "a space's webhook secret signing an app event of another space",
            &plain,
            LambdaEvent::function_url()
                .event(
                    TestKit::new()
                        .with_contentful_secret(SigningSecret::new(ATTACKER_SECRET).unwrap())
                        .contentful_app_event("/contentful/events", TOPIC, BODY, "r-7"),
                )
                .await,
            (401, "signature_mismatch"),
        ),
    ];
    for (name, function, event, (status, code)) in refusals {
        let (got_status, got_code) = function.call(&event).await;
        assert_eq!(got_status, status, "{name}: {got_code}");
        if !code.is_empty() {
            assert_eq!(got_code, code, "{name}");
        }
    }

    // PostgreSQL down: no spool in a function, so a delivery is answered 503 and its
    // provider's retry, once the database is back, is kept.
    let during = LambdaEvent::function_url()
        .event(contentstack(
            "/webhooks/contentstack",
            STACK_A,
            Some(SECRET_A),
        ))
        .await;
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    assert_eq!(
        plain.call(&during).await,
        (503, "inbox_unavailable".to_owned())
    );
    let pg = tokio::task::spawn_blocking(move || {
        pg.resume();
        pg
    })
    .await
    .unwrap();
    assert_eq!(plain.call(&during).await, (200, "accepted".to_owned()));
    accepted += 1;

    // The worker, a second function on a schedule, hands each kept delivery to its handler
    // once; the next run finds nothing.
    let worker = Function::start(
        "worker",
        &[
            ("DATABASE_URL", url.as_str()),
            ("LAMBDA_APP_ROLE", "worker"),
        ],
    )
    .await;
    let scheduled = json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
        "time": "2026-12-07T12:00:00Z", "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/drain-inbox"], "detail": {},
    });
    let first = worker.api.invoke(&scheduled).await.unwrap();
    assert_eq!(
        first,
        json!({"handled": accepted, "waiting": 0, "forgotten": 0})
    );
    let second = worker.api.invoke(&scheduled).await.unwrap();
    assert_eq!(second, json!({"handled": 0, "waiting": 0, "forgotten": 0}));

    // Each invocation ends long before the workers' own purge (a minute after they start),
    // so it purges before it ends: once handled ids are past their time, the next invocation
    // forgets them (and only them), and the table stops growing.
    let expired = pg.query(
        "UPDATE countersign_inbox SET expires_at = 0, due_at = 0 WHERE state = 'done'
            AND id <> (SELECT max(id) FROM countersign_inbox)",
    );
    assert_eq!(expired.trim(), format!("UPDATE {}", accepted - 1));
    let third = worker.api.invoke(&scheduled).await.unwrap();
    assert_eq!(
        third,
        json!({"handled": 0, "waiting": 0, "forgotten": accepted - 1})
    );
    let kept = "SELECT state, id = (SELECT max(id) FROM countersign_inbox) FROM countersign_inbox";
    assert_eq!(pg.query(kept).trim(), "done|t");
    drop(pg);
}

#[tokio::test]
async fn a_function_refuses_sqlite_unless_insisted_on() {
    let dir = temp_dir("lambda-sqlite");
    let database = format!("sqlite:{}", dir.join("inbox.db").display());
    let secret = TestKit::new().contentful_secret().expose().to_owned();
    let env = [
        ("CONTENTFUL_SIGNING_SECRETS", secret.as_str()),
        ("DATABASE_URL", database.as_str()),
    ];
    let mut refused = Function::start("sqlite", &env).await;
    let log = refused.process.data_dir.join("app.log");
    let mut status = None;
    for _ in 0..100 {
        status = refused.process.child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        status.is_some_and(|s| !s.success()),
        "it stopped at its start"
    );
    let said = std::fs::read_to_string(log).unwrap();
    assert!(said.contains("LAMBDA_ALLOW_SQLITE=1"), "{said}");

    let insisted = [env[0], env[1], ("LAMBDA_ALLOW_SQLITE", "1")];
    let function = Function::start("sqlite-insisted", &insisted).await;
    let event = LambdaEvent::function_url()
        .event(ours("/contentful/events", "sqlite-1"))
        .await;
    assert_eq!(function.call(&event).await, (200, "accepted".to_owned()));
    assert_eq!(function.call(&event).await, (200, "duplicate".to_owned()));
}
