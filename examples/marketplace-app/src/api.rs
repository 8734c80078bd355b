//! The UI location pages and the session's API: `GET /ui/{location}?app-token=...`,
//! `GET|PUT /api/settings`, `GET /api/events`, `GET /api/deliveries?state=dead`,
//! `POST /api/deliveries/{id}/retry` (see [`crate::deliveries`]), `GET /api/content-types` (as the app, see
//! [`crate::oauth`]), `GET /oauth/callback`, and `GET /healthz`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use countersign::Rejection;
use countersign::contentstack::session::{
    AppSession, AppTokenLayer, SessionLayer, SessionToken, Sessions,
};
use countersign::contentstack::{AppTokenVerifier, BoxKeySource};
use countersign::replay::BoxReplayStore;
use serde_json::{Value, json};

use crate::config::Config;
use crate::deliveries::{self, Deliveries};
use crate::oauth::{self, AsTheApp};
use crate::store::Store;
use crate::{AppResult, internal, ui};

/// The UI and API routes. `spent` is where app-tokens are spent: each opens one session;
/// `as_the_app` calls Contentstack as the app, when OAuth is configured.
pub(crate) fn router(
    config: &Config,
    keys: BoxKeySource,
    webhooks: Router,
    store: Store,
    spent: BoxReplayStore,
    as_the_app: AsTheApp,
    deliveries: Deliveries,
) -> Router {
    let mut sessions = Sessions::new([config.session_key.clone()]);
    let mut verifier = AppTokenVerifier::new();
    if let Some(app_uid) = &config.app_uid {
        sessions = sessions.with_app_uid(app_uid);
        verifier = verifier.with_app_uid(app_uid);
    }
    let ui = AppTokenLayer::new(verifier, keys, sessions.clone()).with_single_use(spent);
    let api = Router::new()
        .route("/api/settings", get(get_settings).put(put_settings))
        .route("/api/events", get(events))
        .route("/api/content-types", get(oauth::content_types))
        .route("/api/deliveries", get(deliveries::list))
        .route("/api/deliveries/{id}/retry", post(deliveries::retry))
        .route_layer(SessionLayer::new(sessions))
        .layer(Extension(deliveries));
    Router::new()
        .route("/ui/{location}", get(page).layer(ui))
        .layer(Extension(FrameAncestors(
            config.frame_ancestors.as_str().into(),
        )))
        .merge(api)
        .route("/oauth/callback", get(oauth::callback))
        .layer(Extension(as_the_app))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(store)
        .merge(webhooks)
}

/// The origins that may frame the UI pages (`Content-Security-Policy: frame-ancestors`).
#[derive(Clone)]
struct FrameAncestors(Arc<str>);

async fn page(
    Extension(frame_ancestors): Extension<FrameAncestors>,
    Path(location): Path<String>,
    session: AppSession,
    token: SessionToken,
) -> Response {
    match ui::page(&location, &session, &token.token) {
        // Only Contentstack (and, in dev mode, this machine) may frame the page.
        Some(html) => (
            [(
                http::header::CONTENT_SECURITY_POLICY,
                format!("frame-ancestors {}", frame_ancestors.0),
            )],
            Html(html),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such UI location").into_response(),
    }
}

pub(crate) fn stack_of(session: &AppSession) -> Result<String, Rejection> {
    session.stack_api_key().map(str::to_owned).ok_or_else(|| {
        Rejection::new(
            StatusCode::FORBIDDEN,
            "stack_required",
            "Stack app only",
            "this session has no stack",
        )
    })
}

async fn get_settings(State(store): State<Store>, session: AppSession) -> AppResult<Json<Value>> {
    let settings = store
        .settings(session.tenant_key().to_string())
        .await
        .map_err(internal)?;
    let installation = match session.stack_api_key() {
        Some(stack) => store
            .installation(stack.to_owned())
            .await
            .map_err(internal)?,
        None => None,
    };
    Ok(Json(json!({
        "settings": settings,
        "organization_uid": session.organization_uid(),
        "stack_api_key": session.stack_api_key(),
        "installation": installation,
    })))
}

async fn put_settings(
    State(store): State<Store>,
    session: AppSession,
    Json(settings): Json<Value>,
) -> AppResult<Json<Value>> {
    if !settings.is_object() {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"status": "settings must be a JSON object"})),
        )
            .into_response());
    }
    store
        .save_settings(session.tenant_key().to_string(), settings.clone())
        .await
        .map_err(internal)?;
    Ok(Json(json!({ "settings": settings })))
}

/// A page of `/api/events`: `?limit=` (1 to 500, default 50) events before the event id
/// `?before=` (default: the newest).
#[derive(serde::Deserialize)]
struct Page {
    before: Option<i64>,
    limit: Option<u32>,
}

/// The session's stack's events, newest first, a page at a time: `next_before` is the
/// `before` of the next page (`null` on the last).
async fn events(
    State(store): State<Store>,
    session: AppSession,
    page: Result<Query<Page>, QueryRejection>,
) -> AppResult<Json<Value>> {
    let stack = stack_of(&session).map_err(IntoResponse::into_response)?;
    let Ok(Query(Page { before, limit })) = page else {
        return Err(example_support::invalid_page("before"));
    };
    let Some(limit) = example_support::page_limit(limit) else {
        return Err(example_support::invalid_page("before"));
    };
    let events = store.events(stack, before, limit).await.map_err(internal)?;
    let next_before = example_support::next_cursor(&events, limit, "id");
    Ok(Json(
        json!({ "events": events, "next_before": next_before }),
    ))
}
