//! The webhook route's durable inbox: `POST /webhooks/contentstack` answers once a verified
//! delivery is committed to it, and workers record each delivery from there, in the inbox's
//! own transaction, so that its effects happen exactly once. The session's stack sees its
//! dead letters (`GET /api/deliveries?state=dead`) and tries one again
//! (`POST /api/deliveries/{id}/retry`).
//!
//! The inbox lives in the app's database: SQLite under `DATA_DIR` for one instance, the
//! shared PostgreSQL for a fleet, where each instance also keeps a spool under its own
//! `DATA_DIR` so that it acknowledges while PostgreSQL is down.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use countersign::Rejection;
use countersign::contentstack::session::AppSession;
use countersign::contentstack::{Event, Module};
use countersign_inbox::{GiveUp, InboxDelivery, Retried, Workers};
use example_support::inbox::AnyInbox;
use serde_json::{Value, json};

use crate::api::stack_of;
use crate::internal;
use crate::store::{Change, Delivery, Store, record_postgres, record_sqlite};

/// How many deliveries one instance handles at once.
const WORKERS: usize = 8;
/// How many dead letters `GET /api/deliveries?state=dead` lists.
const DEAD_LETTERS_LISTED: usize = 100;

/// The inbox, in the app's database.
pub(crate) type Deliveries = AnyInbox;

/// Starts the workers that record each delivery, in the inbox's transaction.
pub(crate) fn work(deliveries: &Deliveries, store: &Store) -> Workers {
    match deliveries {
        AnyInbox::Sqlite(inbox) => inbox.work_in_transaction(WORKERS, |db, delivery| {
            let delivery = of_inbox(delivery)?;
            record_sqlite(db, &delivery).map_err(failed)?;
            Ok(())
        }),
        AnyInbox::Postgres(inbox) => {
            let store = store.clone();
            inbox.work_in_transaction(WORKERS, move |db, delivery| {
                let store = store.clone();
                Box::pin(async move {
                    let delivery = of_inbox(delivery)?;
                    // The app's tables, before the first write to them.
                    store.migrate().await.map_err(failed)?;
                    record_postgres(db, &delivery).await.map_err(failed)?;
                    Ok(())
                })
            })
        }
    }
}

/// What a delivery records, read from its verified body. Its stack is the verified tenant,
/// never one named elsewhere in the body.
pub(crate) fn from_body(
    id: String,
    stack: Option<&str>,
    body: &[u8],
    received_at: SystemTime,
) -> Option<Delivery> {
    let webhook: Value = serde_json::from_slice(body).ok()?;
    let text = |field: &str| webhook.get(field).and_then(Value::as_str);
    let module = text("module").map(Module::from);
    let event = text("event").map(Event::parse);
    let change = match (&module, &event) {
        (Some(Module::AppInstallation), Some(Event::Install | Event::Upgrade)) => Change::Installed,
        (Some(Module::AppInstallation), Some(Event::Uninstall)) => Change::Uninstalled,
        // Content events, releases, and installation events we do not know: logged.
        _ => Change::Logged,
    };
    Some(Delivery {
        id,
        change,
        module: module.map_or_else(|| "unknown".to_owned(), |m| m.to_string()),
        event: event.map_or_else(|| "unknown".to_owned(), |e| e.to_string()),
        api_key: stack.unwrap_or("").to_owned(),
        triggered_at: text("triggered_at").map(str::to_owned),
        happened_at: countersign::contentstack::triggered_at(body).unwrap_or(received_at),
        data: webhook.get("data").cloned().unwrap_or(Value::Null),
    })
}

/// A failed write, logged in full for the operator; the dead letter a stack's session reads
/// says only what failed.
fn failed(error: impl std::fmt::Display) -> countersign_inbox::BoxError {
    tracing::warn!(%error, "recording a delivery failed; it will be tried again");
    "the database failed".into()
}

/// The delivery a worker was handed, as recorded: a Contentstack webhook's.
fn of_inbox(delivery: &InboxDelivery) -> Result<Delivery, GiveUp> {
    if delivery.provider != countersign_inbox::Provider::Contentstack {
        return Err(GiveUp::new("not a Contentstack delivery"));
    }
    from_body(
        delivery.id.clone(),
        delivery.tenant.as_deref(),
        &delivery.body,
        delivery.received_at,
    )
    .ok_or_else(|| GiveUp::new("the body is not a JSON object"))
}

/// `GET /api/deliveries?state=dead`.
#[derive(serde::Deserialize)]
pub(crate) struct Listing {
    state: String,
}

/// The session's stack's dead letters, newest first: deliveries whose every attempt failed.
pub(crate) async fn list(
    Extension(deliveries): Extension<Deliveries>,
    session: AppSession,
    listing: Result<Query<Listing>, QueryRejection>,
) -> Result<Json<Value>, Response> {
    let stack = stack_of(&session).map_err(IntoResponse::into_response)?;
    if !matches!(&listing, Ok(Query(Listing { state })) if state == "dead") {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_state",
            "Invalid state",
            "list the dead letters with ?state=dead",
        )
        .into_response());
    }
    let dead = deliveries
        .dead_letters(&stack, DEAD_LETTERS_LISTED)
        .await
        .map_err(internal)?;
    let dead: Vec<Value> = dead
        .into_iter()
        .map(|letter| {
            json!({
                "id": letter.id,
                "attempts": letter.attempts,
                "last_error": letter.last_error,
                "received_at": unix_millis(letter.received_at),
            })
        })
        .collect();
    Ok(Json(json!({ "deliveries": dead })))
}

/// Tries one of the session's stack's dead letters again, its attempts counted afresh.
pub(crate) async fn retry(
    Extension(deliveries): Extension<Deliveries>,
    session: AppSession,
    Path(id): Path<String>,
) -> Result<Json<Value>, Response> {
    let stack = stack_of(&session).map_err(IntoResponse::into_response)?;
    match deliveries.retry(&stack, &id).await.map_err(internal)? {
        Retried::Due => Ok(Json(json!({ "status": "retrying" }))),
        // Another stack's dead letter is not found either.
        Retried::NotFound => Err(Rejection::new(
            StatusCode::NOT_FOUND,
            "dead_letter_not_found",
            "No such dead letter",
            "this stack has no dead letter with this id",
        )
        .into_response()),
        Retried::TenantFull => Err(Rejection::of(
            &countersign::reason::INBOX_TENANT_FULL,
            "this stack has its limit of deliveries waiting; retry once they are handled",
        )
        .into_response()),
    }
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(0))
}

/// How long the request path waits to record an installation event itself.
pub(crate) const RECORD_NOW_TIMEOUT: Duration = Duration::from_secs(1);
