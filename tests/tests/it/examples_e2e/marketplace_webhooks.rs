//! Marketplace app: webhooks

use super::*;

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
    let events = events_when(&app, &session, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        api(&app, &session, "/api/events").await["events"],
        events["events"],
        "one event, no more"
    );
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
        // The installation and the good delivery; the replay of it.
        (r#"countersign_inbox_total{outcome="accepted"}"#, 2.0),
        (r#"countersign_inbox_total{outcome="duplicate"}"#, 1.0),
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
pub(crate) async fn scrape(app: &App) -> std::collections::HashMap<String, f64> {
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
pub(crate) async fn installed_with_one_event(dir: &Path) -> (App, SigningKey) {
    let app = start("marketplace-app", dir, &[]).await;
    let key = dev_key(&app);
    install(&app, &key, "bltA").await;
    let body = webhook_body(Duration::from_secs(1), "publish", "bltA", "");
    assert_eq!(deliver(&app, &key, &body).await.status(), 200);
    events_when(&app, &bootstrap(&app, &app_token(&key, "bltA")).await, 1).await;
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
