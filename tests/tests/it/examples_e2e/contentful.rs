//! Contentful app

use super::*;

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
    contentful_post(&app.base, secret, path, body, context, idempotency)
        .await
        .unwrap()
}

/// A request signed with `secret` to `base`: the client's error when it was not answered.
async fn contentful_post(
    base: &str,
    secret: &str,
    path: &str,
    body: &str,
    context: &Context,
    idempotency: Option<&str>,
) -> reqwest::Result<reqwest::Response> {
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
    let mut http = client().post(format!("{base}{path}"));
    for (name, value) in extra
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .chain(signed.iter())
    {
        http = http.header(name, value);
    }
    http.body(body.to_owned()).send().await
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
            json!({"status": "accepted"})
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
        // Webhooks and events go to the inbox (its replay store too), actions to the guard.
        (r#"countersign_inbox_total{outcome="accepted"}"#, 3.0),
        (r#"countersign_inbox_total{outcome="duplicate"}"#, 2.0),
        (r#"countersign_replay_total{outcome="new"}"#, 1.0),
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

/// A crash between a group's commit and its answers: the app (PostgreSQL inbox, group commit)
/// is killed with SIGKILL while hundreds of app events are in flight, then started again.
/// Every event answered 200 is recorded already. Then every event is sent again, signed
/// afresh with its idempotency key, as Contentful retries: each is answered 200, and each is
/// recorded exactly once, whether its first answer came, was cut off, or was never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contentful_app_killed_mid_group_loses_no_answered_delivery_and_doubles_none() {
    const EVENTS: usize = 600;
    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let url = pg.url();
    let dir = temp_dir("contentful-crash");
    let env = [
        ("CONTENTFUL_SIGNING_SECRETS", SECRET),
        ("DATABASE_URL", url.as_str()),
    ];
    let mut app = start("contentful-app", &dir, &env).await;
    let context = Context {
        space_id: Some("space-1".into()),
        environment_id: Some("master".into()),
        ..Context::default()
    };
    let (answered_tx, mut answered_rx) = tokio::sync::mpsc::unbounded_channel();
    let sends: Vec<_> = (0..EVENTS)
        .map(|n| {
            let (base, context, answered) =
                (app.base.clone(), context.clone(), answered_tx.clone());
            tokio::spawn(async move {
                let body = format!(r#"{{"sys":{{"id":"crash-{n}"}}}}"#);
                let key = format!("crash-{n}");
                let sent = contentful_post(
                    &base,
                    SECRET,
                    "/contentful/app-events",
                    &body,
                    &context,
                    Some(&key),
                )
                .await;
                let accepted = sent.is_ok_and(|response| response.status() == 200);
                if accepted {
                    let _ = answered.send(n);
                }
                accepted
            })
        })
        .collect();
    drop(answered_tx);
    // Killed once the first answers are out: commits are being grouped then.
    for _ in 0..40 {
        answered_rx.recv().await.unwrap();
    }
    app.child.kill().unwrap();
    app.child.wait().unwrap();
    let mut answered = Vec::new();
    for (n, send) in sends.into_iter().enumerate() {
        if send.await.unwrap() {
            answered.push(n);
        }
    }
    assert!(
        (40..EVENTS).contains(&answered.len()),
        "the kill cut the load off midway: {} of {EVENTS} answered",
        answered.len()
    );

    let app = start("contentful-app", &dir, &env).await;
    let pool = example_support::postgres::pool(&url).unwrap();
    let db = pool.get().await.unwrap();
    let recorded = || {
        let query = db.query("SELECT body FROM contentful_deliveries", &[]);
        async move {
            let mut recorded = std::collections::HashMap::<usize, i64>::new();
            for row in query.await.unwrap_or_default() {
                let body: String = row.get(0);
                let event: Value = serde_json::from_str(&body).unwrap();
                let n = event["sys"]["id"].as_str().unwrap()["crash-".len()..]
                    .parse()
                    .unwrap();
                *recorded.entry(n).or_default() += 1;
            }
            recorded
        }
    };
    // Each state of the example's inbox, and how many deliveries are in it.
    let inbox_states = || async {
        db.query(
            "SELECT state, count(*) FROM contentful_app_inbox GROUP BY state",
            &[],
        )
        .await
        .map(|rows| {
            rows.iter()
                .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
    };
    // The deliveries the killed instance held wait for their leases (30 s) to lapse.
    let mut seen = std::collections::HashMap::new();
    for _ in 0..600 {
        seen = recorded().await;
        if answered.iter().all(|n| seen.contains_key(n)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lost: Vec<_> = answered.iter().filter(|n| !seen.contains_key(n)).collect();
    let states = inbox_states().await;
    assert!(
        lost.is_empty(),
        "answered 200, never recorded: {lost:?}; the inbox holds {states:?}"
    );

    // Every event again, as the provider retries (50 at a time): answered, and recorded once.
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(50) {
        let resends: Vec<_> = chunk
            .iter()
            .map(|&n| {
                let (base, context) = (app.base.clone(), context.clone());
                tokio::spawn(async move {
                    let body = format!(r#"{{"sys":{{"id":"crash-{n}"}}}}"#);
                    let key = format!("crash-{n}");
                    let path = "/contentful/app-events";
                    let sent =
                        contentful_post(&base, SECRET, path, &body, &context, Some(&key)).await;
                    (n, sent.map(|response| response.status().as_u16()).ok())
                })
            })
            .collect();
        for resend in resends {
            let (n, status) = resend.await.unwrap();
            assert_eq!(status, Some(200), "event {n} sent again");
        }
    }
    for _ in 0..600 {
        seen = recorded().await;
        if seen.len() == EVENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let states = inbox_states().await;
    assert_eq!(seen.len(), EVENTS, "the inbox holds {states:?}");
    let doubled: Vec<_> = seen.iter().filter(|(_, times)| **times > 1).collect();
    assert!(doubled.is_empty(), "recorded twice: {doubled:?}");
    drop(pg);
}
