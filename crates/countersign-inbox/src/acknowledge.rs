//! [`Acknowledge`]: the route's endpoint that commits a verified delivery and answers it.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use countersign_core::reason;
use countersign_core::replay::REPLAY_HEADER;
use http::{HeaderValue, Request, header};
use tower_service::Service;

use countersign::{Rejection, Verified};
use countersign_core::inbox::remember_for;
use countersign_core::replay::{StoreError, StoreErrorKind};

use crate::delivery::{Commit, InboxDelivery, LEASE_GIVEN_BACK, LeaseOffer};
use crate::metrics;
use crate::shared::Shared;
use crate::spool::Refused;
use crate::store::InboxStore;

/// How long a commit may take before the delivery goes to the spool (or is refused), well
/// within the 30 s a provider waits for an answer.
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Commits each verified delivery to its [`Inbox`](crate::Inbox) and answers it: 200 `{"status":"accepted"}`
/// once it is durable, 200 `{"status":"duplicate"}` (with `X-Countersign-Replay: duplicate`)
/// for a delivery id already there, 503 `inbox_tenant_full` or `inbox_unavailable` (with
/// `Retry-After`) when it cannot be committed, 422 `inbox_tenant_invalid` for a tenant id no
/// inbox keeps ([`storable_tenant`](countersign_core::inbox::storable_tenant)). Made by [`Inbox::acknowledge`](crate::Inbox::acknowledge).
pub struct Acknowledge<St> {
    shared: Arc<Shared<St>>,
}

impl<St> Acknowledge<St> {
    pub(crate) fn new(shared: Arc<Shared<St>>) -> Self {
        Self { shared }
    }
}

impl<St> Clone for Acknowledge<St> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<St> fmt::Debug for Acknowledge<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acknowledge").finish_non_exhaustive()
    }
}

impl<St: InboxStore, B: Send + 'static> Service<Request<B>> for Acknowledge<St> {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let verified = request.extensions().get::<Verified>().cloned();
        Box::pin(async move { Ok(acknowledge(&shared, verified).await) })
    }
}

async fn acknowledge<St: InboxStore>(
    shared: &Arc<Shared<St>>,
    verified: Option<Verified>,
) -> Response {
    let Some(verified) = verified else {
        return Rejection::of(
            &reason::LAYER_MISSING,
            "Inbox::acknowledge must run after a verification layer (ContentstackWebhookLayer or ContentfulRequestLayer)",
        )
        .into_response();
    };
    // A signature that never expires (a Contentful TTL of 0) would need a delivery remembered
    // forever; any shorter memory lets a captured request in again once it lapses.
    let Some(window) = verified.window() else {
        return Rejection::of(
            &reason::REPLAY_WINDOW_UNBOUNDED,
            "the inbox needs signatures that expire: the verifier's TTL is 0 (off); set a TTL",
        )
        .into_response();
    };
    // Refused for good, never spooled: a tenant id the database would refuse fails alone.
    if verified
        .tenant()
        .is_some_and(|tenant| !countersign_core::inbox::storable_tenant(tenant))
    {
        metrics::outcome(metrics::INBOX, "tenant_invalid");
        return Rejection::of(
            &reason::INBOX_TENANT_INVALID,
            "the delivery's tenant id is longer than 255 bytes or holds a control character",
        )
        .into_response();
    }
    let now = SystemTime::now();
    let delivery = delivery_of(&verified, now);
    let settings = &shared.settings;
    let memory = remember_for(Some(window), settings.margin).max(settings.retry_horizon);
    let expires_at = now.checked_add(memory).unwrap_or(now);
    let limit = shared.limit_for(delivery.tenant.as_ref());
    // A commit that takes too long goes to the spool: it may still land, and the spooled copy
    // is then a duplicate of it.
    let late = || {
        StoreError::new(
            StoreErrorKind::Timeout,
            "the inbox's store did not commit in time",
        )
    };
    let committed = match shared.offers.offer(settings.lease) {
        // With a free worker's offer, the commit runs in a task of its own: whatever becomes
        // of this request (its client gone, its time up), a delivery committed leased to that
        // worker reaches it, or its lease is given back. (At most one such task per free
        // worker.)
        Some(offer) => {
            let commit = tokio::spawn(commit_offering(
                Arc::clone(shared),
                delivery.clone(),
                expires_at,
                limit,
                offer,
            ));
            match tokio::time::timeout(COMMIT_TIMEOUT, commit).await {
                Ok(Ok(committed)) => committed,
                Ok(Err(join)) => {
                    tracing::error!(target: "countersign", delivery = %delivery.id, panicked = join.is_panic(), "the inbox's commit stopped before it was done");
                    Err(StoreError::new(
                        StoreErrorKind::Unavailable,
                        "the inbox's commit stopped before it was done",
                    ))
                }
                Err(_) => Err(late()),
            }
        }
        // Without: in this request, so that one given up before its group was written is
        // never written.
        None => tokio::time::timeout(COMMIT_TIMEOUT, async {
            let commit = shared.store.commit(&delivery, expires_at, limit).await?;
            if commit == Commit::New {
                shared.committed.notify_waiters();
            }
            Ok(commit)
        })
        .await
        .unwrap_or_else(|_| Err(late())),
    };
    // One outcome per request; a store error is counted where the spool decides it.
    if let Ok(commit) = &committed {
        metrics::outcome(
            metrics::INBOX,
            match commit {
                Commit::New => "accepted",
                Commit::Duplicate => "duplicate",
                Commit::TenantFull => "tenant_full",
            },
        );
    }
    match committed {
        Ok(Commit::New) => status("accepted"),
        Ok(Commit::Duplicate) => {
            tracing::info!(target: "countersign", delivery = %delivery.id, "acknowledged a duplicate of a committed delivery");
            let mut response = status("duplicate");
            response
                .headers_mut()
                .insert(REPLAY_HEADER, HeaderValue::from_static("duplicate"));
            response
        }
        Ok(Commit::TenantFull) => Rejection::of(
            &reason::INBOX_TENANT_FULL,
            "the delivery's tenant has its limit of deliveries waiting in the inbox; other tenants are served",
        )
        .into_response(),
        Err(error) => spool(shared, delivery, expires_at, &error).await,
    }
}

/// Commits `delivery` with `offer` of its first attempt to a free worker of this instance's
/// pool: leased with its commit, it goes to that worker; left pending, the workers are woken
/// to claim it. A lease the worker could no longer hold long enough (the commit took a third
/// of a lease, when the first renewal is due) is given back rather than run late beside a
/// takeover; so is one a failed commit may have taken after all (a statement that ran out of
/// time, and committed).
async fn commit_offering<St: InboxStore>(
    shared: Arc<Shared<St>>,
    delivery: InboxDelivery,
    expires_at: SystemTime,
    limit: Option<u64>,
    offer: crate::offer::Offer,
) -> Result<Commit, StoreError> {
    let lease = LeaseOffer {
        lease: &offer.lease,
        lease_until: offer.lease_until,
        tenant_concurrency: shared.settings.tenant_concurrency,
    };
    match shared
        .store
        .commit_and_lease(&delivery, expires_at, limit, lease)
        .await
    {
        Ok((Commit::New, true)) => {
            let lease = offer.lease.clone();
            let in_time = offer.leased_for() < shared.settings.lease / 3;
            if !(in_time && offer.take(delivery.clone())) {
                tokio::spawn(give_back(shared, delivery.id, lease));
            }
            Ok(Commit::New)
        }
        Ok((commit, _)) => {
            if commit == Commit::New {
                shared.committed.notify_waiters();
            }
            Ok(commit)
        }
        Err(error) => {
            tokio::spawn(give_back(shared, delivery.id, offer.lease));
            Err(error)
        }
    }
}

/// Gives back `lease` on delivery `id`, if the delivery holds it: due again at once, for the
/// next claim, this attempt counted without having run. Tried until it is done or the lease
/// may have lapsed (then the delivery is taken over as any lapsed lease is).
async fn give_back<St: InboxStore>(shared: Arc<Shared<St>>, id: String, lease: String) {
    let settings = shared.settings;
    let until = tokio::time::Instant::now() + settings.lease.mul_f64(crate::worker::LAPSE_SHARE);
    let mut wait = std::time::Duration::from_millis(50);
    loop {
        let now = SystemTime::now();
        let dead_until = now.checked_add(settings.dead_letter_ttl).unwrap_or(now);
        match shared
            .store
            .fail(&id, &lease, LEASE_GIVEN_BACK, Some(now), dead_until)
            .await
        {
            Ok(given_back) => {
                if given_back {
                    tracing::info!(target: "countersign", delivery = %id, "gave back the lease a commit took for workers that did not get it");
                    shared.committed.notify_waiters();
                }
                return;
            }
            Err(error) if tokio::time::Instant::now() + wait < until => {
                tracing::warn!(target: "countersign", %error, delivery = %id, "could not give back a lease; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(2));
            }
            Err(error) => {
                tracing::warn!(target: "countersign", %error, delivery = %id, "could not give back a lease: the delivery is taken over when it lapses");
                return;
            }
        }
    }
}

/// The store failed: the delivery waits in the spool, if there is one and it has room.
async fn spool<St: InboxStore>(
    shared: &Arc<Shared<St>>,
    delivery: InboxDelivery,
    expires_at: SystemTime,
    error: &StoreError,
) -> Response {
    if let Some(spool) = shared.spool.clone() {
        let id = delivery.id.clone();
        // Written and flushed to disk off the async threads.
        let appended =
            tokio::task::spawn_blocking(move || spool.append(&delivery, expires_at)).await;
        let detail = match appended {
            Ok(Ok(())) => {
                metrics::outcome(metrics::INBOX, "spooled");
                tracing::warn!(target: "countersign", %error, delivery = %id, "the inbox is unavailable: the delivery waits in the spool");
                shared.committed.notify_waiters();
                return status("accepted");
            }
            Ok(Err(Refused::Full)) => "the inbox is unavailable and the spool is full",
            Ok(Err(Refused::Busy)) => {
                "the inbox is unavailable and the same delivery is being spooled now"
            }
            Ok(Err(Refused::Io(io))) => {
                tracing::error!(target: "countersign", %error, %io, delivery = %id, "the inbox is unavailable and the spool failed");
                "the inbox is unavailable and the spool failed"
            }
            Err(join) => {
                tracing::error!(target: "countersign", %error, %join, delivery = %id, "the inbox is unavailable and the spool failed");
                "the inbox is unavailable and the spool failed"
            }
        };
        metrics::outcome(metrics::INBOX, "store_error");
        // The store's own error stays in the log: it may name hosts and tables.
        tracing::warn!(target: "countersign", %error, delivery = %id, detail, "a delivery was refused: the inbox is unavailable");
        return Rejection::of(&reason::INBOX_UNAVAILABLE, detail).into_response();
    }
    metrics::outcome(metrics::INBOX, "store_error");
    tracing::warn!(target: "countersign", %error, delivery = %delivery.id, "a delivery was refused: the inbox is unavailable");
    Rejection::of(&reason::INBOX_UNAVAILABLE, "the inbox is unavailable").into_response()
}

/// What the inbox keeps of a verified request.
fn delivery_of(verified: &Verified, now: SystemTime) -> InboxDelivery {
    let provider = verified.provider();
    // Contentful's signed headers (space, environment, user, topic...) are kept, the signature
    // and credentials never.
    let signed_headers = verified.contentful().map_or_else(Vec::new, |verdict| {
        verdict
            .signed_headers()
            .filter(|(name, _)| !countersign_core::SENSITIVE_HEADERS.contains(name))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    });
    let tenant = verified.tenant().map(str::to_owned);
    InboxDelivery {
        id: verified.replay_key().to_hex(),
        provider,
        tenant,
        body: verified.body().clone(),
        signed_headers,
        received_at: now,
        attempt: 0,
    }
}

fn status(status: &'static str) -> Response {
    let body = match status {
        "accepted" => Bytes::from_static(br#"{"status":"accepted"}"#),
        _ => Bytes::from_static(br#"{"status":"duplicate"}"#),
    };
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
