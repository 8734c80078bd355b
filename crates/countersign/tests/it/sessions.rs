//! Signed UI locations end to end: real RS256 app-tokens from a test key, a real server, a real
//! client. Bootstrap, then the API with the app's own session.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::{Duration, SystemTime};

use crate::common::*;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use countersign::contentstack::session::{
    AppSession, AppTokenLayer, SessionKey, SessionLayer, SessionToken, Sessions, Transport,
};
use countersign::contentstack::{AppTokenVerifier, SigningKey, StaticKeys, mint_app_token};
use countersign::{Clock, Rejection};
use serde_json::{Value, json};

fn app_token(stack: Option<&str>, signer: &str) -> String {
    let claims = json!({
        "app_uid": "app1", "installation_uid": "inst1", "organization_uid": "org1", "user_uid": "user1",
        "stack_api_key": stack,
    });
    mint_app_token(
        &SigningKey::from_pem(signer).unwrap(),
        &claims,
        SystemTime::now(),
        Duration::from_secs(300),
    )
    .unwrap()
}

fn sessions(fill: u8) -> Sessions {
    Sessions::new([SessionKey::new([fill; 32]).unwrap()])
}

async fn page(session: AppSession, token: SessionToken) -> String {
    format!(
        r#"<meta name="app-session" content="{}"><meta name="csrf" content="{}"><p>{}</p>"#,
        token.token,
        token.csrf_token,
        session.tenant_key()
    )
}

async fn whoami(session: AppSession) -> Json<Value> {
    Json(json!({
        "organization": session.organization_uid(),
        "stack": session.stack_api_key(),
        "user": session.user_uid(),
        "tenant": session.tenant_key().to_string(),
    }))
}

async fn stack_settings(
    session: AppSession,
    Path(stack): Path<String>,
) -> Result<Json<Value>, Rejection> {
    session.require_stack(&stack)?;
    Ok(Json(json!({ "stack": stack, "theme": "dark" })))
}

async fn server(ui: AppTokenLayer<StaticKeys>, api: SessionLayer) -> String {
    let app = Router::new()
        .route("/ui/{location}", get(page).layer(ui))
        .merge(
            Router::new()
                .route("/api/whoami", get(whoami))
                .route("/api/whoami", post(whoami))
                .route("/api/stacks/{stack}/settings", get(stack_settings))
                .route_layer(api),
        );
    format!("http://{}", serve(app).await)
}

fn ui_layer(sessions: Sessions) -> AppTokenLayer<StaticKeys> {
    AppTokenLayer::new(
        AppTokenVerifier::new(),
        StaticKeys::parse(PUBLIC_A).unwrap(),
        sessions,
    )
}

fn meta(html: &str, name: &str) -> String {
    let pattern = format!(r#"name="{name}" content=""#);
    let start = html.find(&pattern).unwrap() + pattern.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// A GET of `url` (with a bearer session, if given) that is refused: its status and code.
async fn refusal(url: String, session: Option<&String>) -> (u16, String) {
    let mut request = client().get(url);
    if let Some(session) = session {
        request = request.bearer_auth(session);
    }
    let (status, body) = problem(request.send().await.unwrap()).await;
    (status, body["code"].as_str().unwrap().to_owned())
}

/// Opens a UI location with `token`; returns the page.
async fn bootstrap(base: &str, token: &str) -> String {
    let response = client()
        .get(format!("{base}/ui/sidebar?app-token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_single_use_app_token_opens_one_session_and_its_url_nothing_more() {
    let store = countersign::replay::MemoryStore::new(1_000);
    let ui = ui_layer(sessions(1)).with_single_use(store);
    let base = server(ui, SessionLayer::new(sessions(1))).await;
    let token = app_token(Some("bltA"), PRIVATE_A);
    let html = bootstrap(&base, &token).await;
    assert!(!meta(&html, "app-session").is_empty());
    // The same URL again, as from an access log or the browser's history.
    let url = format!("{base}/ui/sidebar?app-token={token}");
    assert_eq!(
        refusal(url.clone(), None).await,
        (401, "app_token_reused".to_owned())
    );
    // Another token of the same user (another `iat` or claim: another token) opens its own.
    let claims = json!({
        "app_uid": "app1", "installation_uid": "inst1", "organization_uid": "org1",
        "user_uid": "user1", "stack_api_key": "bltA", "jti": "second",
    });
    let key = SigningKey::from_pem(PRIVATE_A).unwrap();
    let second =
        mint_app_token(&key, &claims, SystemTime::now(), Duration::from_secs(300)).unwrap();
    bootstrap(&base, &second).await;
    // Without single use, the URL opens a session on every load.
    let reusable = server(ui_layer(sessions(1)), SessionLayer::new(sessions(1))).await;
    bootstrap(&reusable, &token).await;
    bootstrap(&reusable, &token).await;
}

#[tokio::test]
async fn bootstrap_then_an_api_call_with_the_session() {
    let base = server(ui_layer(sessions(1)), SessionLayer::new(sessions(1))).await;
    let html = bootstrap(&base, &app_token(Some("bltA"), PRIVATE_A)).await;
    assert!(
        html.contains("org:org1/app:app1/inst:inst1/stack:bltA"),
        "{html}"
    );
    let session = meta(&html, "app-session");

    let response = client()
        .get(format!("{base}/api/whoami"))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(
        me,
        json!({"organization": "org1", "stack": "bltA", "user": "user1", "tenant": "org:org1/app:app1/inst:inst1/stack:bltA"})
    );
}

#[tokio::test]
async fn the_page_answer_keeps_the_token_out_of_referrers_and_caches() {
    let base = server(ui_layer(sessions(1)), SessionLayer::new(sessions(1))).await;
    let good = client()
        .get(format!(
            "{base}/ui/config?app-token={}",
            app_token(Some("bltA"), PRIVATE_A)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    assert_eq!(good.headers()["referrer-policy"], "no-referrer");
    assert_eq!(good.headers()["cache-control"], "no-store");
    assert!(
        good.headers().get("set-cookie").is_none(),
        "bearer mode sets no cookie"
    );
    // A refused token is kept out of referrers too.
    let bad = client()
        .get(format!(
            "{base}/ui/config?app-token={}",
            app_token(Some("bltA"), PRIVATE_B)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(bad.headers()["referrer-policy"], "no-referrer");
    assert_eq!(bad.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn a_missing_or_invalid_app_token_on_a_ui_route_is_401() {
    let base = server(ui_layer(sessions(1)), SessionLayer::new(sessions(1))).await;
    assert_eq!(
        refusal(format!("{base}/ui/config"), None).await,
        (401, "app_token_missing".to_owned())
    );
    assert_eq!(
        refusal(format!("{base}/ui/config?app-token=not.a.jwt"), None).await,
        (401, "app_token_malformed".to_owned())
    );
    let other_key = app_token(Some("bltA"), PRIVATE_B);
    assert_eq!(
        refusal(format!("{base}/ui/config?app-token={other_key}"), None).await,
        (401, "app_token_signature_mismatch".to_owned())
    );
}

#[tokio::test]
async fn a_session_from_stack_a_is_refused_on_data_of_stack_b() {
    let base = server(ui_layer(sessions(1)), SessionLayer::new(sessions(1))).await;
    let html = bootstrap(&base, &app_token(Some("bltA"), PRIVATE_A)).await;
    let session = meta(&html, "app-session");
    let own = client()
        .get(format!("{base}/api/stacks/bltA/settings"))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    let (status, p) = problem(
        client()
            .get(format!("{base}/api/stacks/bltB/settings"))
            .bearer_auth(&session)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, p["code"].as_str()), (403, Some("tenant_mismatch")));
}

#[tokio::test]
async fn an_app_token_replayed_as_a_session_is_refused() {
    let base = server(ui_layer(sessions(1)), SessionLayer::new(sessions(1))).await;
    let token = app_token(Some("bltA"), PRIVATE_A);
    assert_eq!(
        refusal(format!("{base}/api/whoami"), Some(&token)).await,
        (401, "session_unknown_key".to_owned())
    );
}

#[tokio::test]
async fn missing_tampered_expired_and_unknown_key_sessions_are_401() {
    let later = Clock::from_fn(|| SystemTime::now() + Duration::from_secs(3601));
    let base = server(ui_layer(sessions(1)), SessionLayer::new(sessions(1))).await;
    let expiring = server(
        ui_layer(sessions(1)),
        SessionLayer::new(sessions(1)).with_clock(later),
    )
    .await;
    let html = bootstrap(&base, &app_token(Some("bltA"), PRIVATE_A)).await;
    let session = meta(&html, "app-session");

    let (status, p) = problem(
        client()
            .get(format!("{base}/api/whoami"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, p["code"].as_str()), (401, Some("session_missing")));

    // Flip the signature's first character (all six of its bits are signature bits).
    let (signed_part, signature) = session.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signed_part}.{first}{}", &signature[1..]);
    assert_eq!(
        refusal(format!("{base}/api/whoami"), Some(&tampered)).await,
        (401, "session_tampered".to_owned())
    );

    let (status, p) = problem(
        client()
            .get(format!("{expiring}/api/whoami"))
            .bearer_auth(&session)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, p["code"].as_str()), (401, Some("session_expired")));

    let other_app = server(ui_layer(sessions(2)), SessionLayer::new(sessions(2))).await;
    assert_eq!(
        refusal(format!("{other_app}/api/whoami"), Some(&session)).await,
        (401, "session_unknown_key".to_owned())
    );
}

#[tokio::test]
async fn sessions_survive_a_key_rotation() {
    let old_base = server(ui_layer(sessions(1)), SessionLayer::new(sessions(1))).await;
    let html = bootstrap(&old_base, &app_token(Some("bltA"), PRIVATE_A)).await;
    let old_session = meta(&html, "app-session");
    let rotated = Sessions::new([
        SessionKey::new([2u8; 32]).unwrap(),
        SessionKey::new([1u8; 32]).unwrap(),
    ]);
    let base = server(ui_layer(rotated.clone()), SessionLayer::new(rotated)).await;
    assert_eq!(
        client()
            .get(format!("{base}/api/whoami"))
            .bearer_auth(&old_session)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let html = bootstrap(&base, &app_token(Some("bltA"), PRIVATE_A)).await;
    let new_session = meta(&html, "app-session");
    assert_eq!(
        client()
            .get(format!("{base}/api/whoami"))
            .bearer_auth(&new_session)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The old deployment, without the new key, refuses the new session.
    assert_eq!(
        client()
            .get(format!("{old_base}/api/whoami"))
            .bearer_auth(&new_session)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn organization_apps_have_no_stack() {
    let base = server(ui_layer(sessions(1)), SessionLayer::new(sessions(1))).await;
    let html = bootstrap(&base, &app_token(None, PRIVATE_A)).await;
    let session = meta(&html, "app-session");
    let me: Value = client()
        .get(format!("{base}/api/whoami"))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["stack"], Value::Null);
    assert_eq!(me["tenant"], "org:org1/app:app1/inst:inst1/stack:-");
}

#[tokio::test]
async fn cookie_mode_sets_a_partitioned_host_cookie_and_requires_csrf_on_writes() {
    let base = server(
        ui_layer(sessions(1)).with_transport(Transport::Cookie),
        SessionLayer::new(sessions(1)),
    )
    .await;
    let response = client()
        .get(format!(
            "{base}/ui/config?app-token={}",
            app_token(Some("bltA"), PRIVATE_A)
        ))
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in [
        "__Host-countersign-session=",
        "Secure",
        "HttpOnly",
        "SameSite=None",
        "Partitioned",
        "Path=/",
    ] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(
        !cookie.contains("Domain="),
        "a __Host- cookie has no Domain"
    );
    let html = response.text().await.unwrap();
    let csrf = meta(&html, "csrf");
    let pair = cookie.split(';').next().unwrap().to_owned();

    let read = client()
        .get(format!("{base}/api/whoami"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let (status, p) = problem(
        client()
            .post(format!("{base}/api/whoami"))
            .header("cookie", &pair)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (403, Some("csrf_token_mismatch"))
    );
    let write = client()
        .post(format!("{base}/api/whoami"))
        .header("cookie", &pair)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 200);
}

#[tokio::test]
async fn without_a_key_the_ui_route_is_503_so_the_page_can_be_retried() {
    let layer = AppTokenLayer::new(AppTokenVerifier::new(), countersign::NoKeys, sessions(1));
    let app = Router::new().route("/ui/{location}", get(page).layer(layer));
    let base = format!("http://{}", serve(app).await);
    let token = app_token(Some("bltA"), PRIVATE_A);
    let (status, p) = problem(
        client()
            .get(format!("{base}/ui/config?app-token={token}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, p["code"].as_str()), (503, Some("key_unavailable")));
}
