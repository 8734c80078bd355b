//! The routes: webhooks and app events (committed to the durable inbox and answered at once;
//! recorded from there), app actions and the deliveries' read-back (frontend-signed), each
//! behind the layers it needs.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use countersign::contentful::{RequestKinds, RequestVerifier};
use countersign::replay::{ReplayGuardLayer, ReplayStore};
use countersign::{ContentfulRequest, ContentfulRequestLayer, Rejection};
use example_support::inbox::AnyInbox;
use serde_json::{Value, json};
use tower::ServiceBuilder;

use crate::records::Records;

/// A page of `/api/deliveries`: `?limit=` (1 to 500, default 50) deliveries after the
/// sequence number `?after=` (default: from the first).
#[derive(serde::Deserialize)]
struct Page {
    after: Option<i64>,
    limit: Option<u32>,
}

/// What the signed space environment received, oldest first; `next_after` is the `after` of
/// the next page (`null` on the last). Frontend-signed: the user, space and environment must be
/// signed.
async fn deliveries(
    State(records): State<Records>,
    request: ContentfulRequest,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Value>, Response> {
    let (Some(_user), Some(space), Some(environment)) = (
        request.user_id(),
        request.space_id(),
        request.environment_id(),
    ) else {
        return Err(Rejection::new(
            StatusCode::UNAUTHORIZED,
            "context_missing",
            "Signed user, space and environment missing",
            "the app frontend signs the user, space and environment of this request",
        )
        .into_response());
    };
    let Ok(Query(Page { after, limit })) = page else {
        return Err(example_support::invalid_page("after"));
    };
    let Some(limit) = example_support::page_limit(limit) else {
        return Err(example_support::invalid_page("after"));
    };
    let deliveries = records
        .list(
            space.to_owned(),
            environment.to_owned(),
            after.unwrap_or(0),
            limit,
        )
        .await
        .map_err(|e| example_support::storage_unavailable(&e))?;
    let next_after = example_support::next_cursor(&deliveries, limit, "seq");
    Ok(Json(
        json!({"deliveries": deliveries, "next_after": next_after}),
    ))
}

async fn action(
    UrlPath(name): UrlPath<String>,
    request: ContentfulRequest,
) -> Result<Json<Value>, Rejection> {
    let user_id = request.user_id().ok_or_else(|| {
        Rejection::new(
            StatusCode::UNAUTHORIZED,
            "user_id_missing",
            "Signed user id missing",
            "frontend-signed requests carry a signed x-contentful-user-id",
        )
    })?;
    let mut context = json!({
        "action": name,
        "space_id": request.space_id(),
        "environment_id": request.environment_id(),
        "user_id": user_id,
    });
    if let Some(app_id) = request.app_id() {
        context["app_id"] = app_id.into();
    }
    Ok(Json(context))
}

/// Every route of the app, with its layers.
pub(crate) fn routes<St: ReplayStore>(
    verifier: RequestVerifier,
    replay: St,
    records: Records,
    inbox: AnyInbox,
) -> Router {
    // Verification first. Webhooks and app events then go to the inbox, which is their
    // replay store too: a webhook's retries share its signed idempotency key. A captured
    // action replayed within the TTL has the same signed message, and is acknowledged rather
    // than run again (the replay store). Events and webhooks are never a request a user had
    // signed; actions and reads are nothing else. Reading the records changes nothing:
    // verified only.
    let events = ContentfulRequestLayer::new(verifier.clone().with_kinds(RequestKinds::EVENTS));
    let accepted = post(move |request: axum::extract::Request| {
        let inbox = inbox.clone();
        async move { inbox.acknowledge(request).await }
    });
    let frontend = verifier.with_kinds(RequestKinds::FRONTEND);
    let actions = ServiceBuilder::new()
        .layer(ContentfulRequestLayer::new(frontend.clone()))
        .layer(ReplayGuardLayer::new(replay));
    Router::new()
        .route(
            "/contentful/webhooks",
            accepted.clone().layer(events.clone()),
        )
        .route("/contentful/app-events", accepted.layer(events))
        .route("/contentful/actions/{name}", post(action).layer(actions))
        .route(
            "/api/deliveries",
            get(deliveries).layer(ContentfulRequestLayer::new(frontend)),
        )
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(records)
}
