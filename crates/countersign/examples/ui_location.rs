//! A signed UI location: `cargo run -p countersign --example ui_location`.
//!
//! The page load's `app-token` is verified and exchanged for the app's own session, which the
//! page's API calls send as a bearer token. A dev key stands in for Contentstack's (in
//! production: `WellKnownKeys::for_region(..)`); it prints the URL of a page load to open.

use std::time::{Duration, SystemTime};

use axum::{Json, Router, routing::get};
use countersign::contentstack::session::{
    AppSession, AppTokenLayer, SessionKey, SessionLayer, SessionToken, Sessions,
};
use countersign::contentstack::{AppTokenVerifier, KeySet, SigningKey, StaticKeys, mint_app_token};

async fn page(session: AppSession, SessionToken { token, .. }: SessionToken) -> String {
    format!(
        "Stack {:?}. Call /api/whoami with: Authorization: Bearer {token}",
        session.stack_api_key()
    )
}

async fn whoami(session: AppSession) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "stack": session.stack_api_key(), "user": session.user_uid() }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev_key = SigningKey::generate()?;
    let keys = StaticKeys::new(KeySet::from(dev_key.public_key().clone()));
    let sessions =
        Sessions::new([SessionKey::new(countersign::random_hex(32)?)?]).with_app_uid("my-app");
    let verifier = AppTokenVerifier::new().with_app_uid("my-app");
    let app = Router::new()
        .route(
            "/ui/config",
            get(page).layer(AppTokenLayer::new(verifier, keys, sessions.clone())),
        )
        .route(
            "/api/whoami",
            get(whoami).layer(SessionLayer::new(sessions)),
        );

    let claims = serde_json::json!({"app_uid": "my-app", "installation_uid": "i1",
        "organization_uid": "o1", "user_uid": "u1", "stack_api_key": "blt1"});
    let token = mint_app_token(
        &dev_key,
        &claims,
        SystemTime::now(),
        Duration::from_secs(300),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3002").await?;
    println!("Open: http://127.0.0.1:3002/ui/config?app-token={token}");
    axum::serve(listener, app).await?;
    Ok(())
}
