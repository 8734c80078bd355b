//! Marketplace app: UI locations, sessions, restarts and tenants

use super::*;

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

    let events_a = events_when(&app, &session_a, 2).await;
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
    let events_b = events_when(&app, &session_b, 1).await;
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
    assert_eq!(
        (
            installed.status().as_u16(),
            installed.json::<Value>().await.unwrap()["code"].clone()
        ),
        (403, json!("installation_event_not_rsa")),
        "the stack's admins hold its HMAC secret: an installation event signed with it is refused"
    );
    assert_eq!(
        send(Some("s3cret")).await.unwrap().status(),
        403,
        "not installed"
    );
    // The Marketplace's own install, signed with Contentstack's key, installs it.
    let install = installation_body(DEV_APP, "install", "bltA");
    let installed = client()
        .post(format!("{}/webhooks/contentstack", app.base))
        .header(
            "x-contentstack-request-signature",
            dev_key(&app)
                .sign_webhook(install.as_bytes(), SaltLength::Digest)
                .unwrap(),
        )
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
        events_when(&app, &session, 1).await["events"]
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
async fn marketplace_app_records_a_delivery_once_across_a_restart() {
    let dir = temp_dir("idempotent");
    let app = start("marketplace-app", &dir, &[]).await;
    let key = dev_key(&app);
    install(&app, &key, "bltA").await;
    let body = webhook_body(Duration::from_secs(1), "publish", "bltA", "");
    assert_eq!(deliver(&app, &key, &body).await.status(), 200);
    // Killed at once, perhaps before its workers recorded it: the inbox on disk has it.
    drop(app);
    let app = start("marketplace-app", &dir, &[]).await;
    // The same delivery, signed afresh: the inbox remembers it across the restart.
    let again = deliver(&app, &key, &body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.headers().get("x-countersign-replay").unwrap(),
        "duplicate"
    );
    let session = bootstrap(&app, &app_token(&key, "bltA")).await;
    let events = events_when(&app, &session, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        api(&app, &session, "/api/events").await["events"],
        events["events"],
        "recorded once"
    );
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
}
