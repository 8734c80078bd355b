//! What the inbox keeps and hands over: a delivery, a handler's refusal, and what the store
//! answers about them.

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use countersign_core::Provider;
use serde::de::DeserializeOwned;

/// What a dead letter says when it is a spooled delivery that waited in the spool past half
/// the time its id is remembered (the retry horizon, [`Inbox::with_retry_horizon`](crate::Inbox::with_retry_horizon), or its
/// signature's window and the margin if longer): it was set aside, not run, since another
/// instance may have committed and handled it already and forgotten its id since. An
/// operator checks the handler's own records before retrying it.
pub const MAYBE_HANDLED: &str = "set aside unrun: it waited in an instance's spool past half the time its id is remembered, so it may have been handled already; retry it only if its effects are absent";

/// The `last_error` of a delivery whose commit leased it to a free worker that then could not
/// run it (its workers stopped, the commit took a third of a lease, or the commit failed and
/// may have landed): due again at once, for the next claim, that attempt counted (the
/// handler's first run sees attempt 2). The next attempt's outcome replaces it; a dead letter
/// keeps it only if that was the last attempt.
pub const LEASE_GIVEN_BACK: &str =
    "its first attempt's lease was given back before the attempt began";

/// What a handler's error is.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A verified delivery as the inbox keeps it and hands it to the handler. `Debug` shows its
/// size, not its body.
#[derive(Clone, PartialEq, Eq)]
pub struct InboxDelivery {
    /// The delivery id: the same for every retry and replay of the delivery (the hex of its
    /// [`ReplayKey`](countersign_core::replay::ReplayKey)). Make the handler's writes
    /// idempotent by it.
    pub id: String,
    /// Who sent it.
    pub provider: Provider,
    /// Its tenant: the stack (`api_key`) of a Contentstack webhook, the space of a Contentful
    /// request.
    pub tenant: Option<String>,
    /// The verified body.
    pub body: Bytes,
    /// Contentful: the signed headers (topic, space, environment, ...), credentials left out.
    pub signed_headers: Vec<(String, String)>,
    /// When it was committed.
    pub received_at: SystemTime,
    /// Which attempt this is: 1 for the first.
    pub attempt: u32,
}

impl InboxDelivery {
    /// The body, deserialized.
    ///
    /// # Errors
    /// When the body is not a `T` in JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// A signed header's value (Contentful: `x-contentful-topic`, ...), by its lower-case name.
    #[must_use]
    pub fn signed_header(&self, name: &str) -> Option<&str> {
        self.signed_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

impl fmt::Debug for InboxDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxDelivery")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("tenant", &self.tenant)
            .field("body_len", &self.body.len())
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// A handler's error that makes its delivery a dead letter at once, with no further attempt:
/// for a delivery that no retry can help (its body is not an event the app knows, say).
///
/// ```
/// use countersign_inbox::{GiveUp, InboxDelivery};
///
/// async fn handle(delivery: InboxDelivery) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     let Ok(event) = delivery.json::<serde_json::Value>() else {
///         return Err(GiveUp::new("the body is not JSON").into());
///     };
///     println!("{}", event["event"]);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveUp {
    reason: String,
}

impl GiveUp {
    /// Gives up on the delivery, for `reason` (kept with the dead letter).
    #[must_use]
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for GiveUp {}

/// What committing a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// It is in the inbox now, due at once.
    New,
    /// It was there already (a retry or a replay): nothing changed.
    Duplicate,
    /// Its tenant has its limit of deliveries waiting: not committed.
    TenantFull,
}

/// What trying a dead letter again did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// It is due again, its attempts counted afresh.
    Due,
    /// There is no such dead letter (of this tenant).
    NotFound,
    /// Its tenant has its limit of deliveries waiting: try again later.
    TenantFull,
}

/// A delivery whose last attempt failed: kept until it is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The delivery id.
    pub id: String,
    /// Who sent it.
    pub provider: Provider,
    /// Its tenant.
    pub tenant: Option<String>,
    /// How many attempts it had.
    pub attempts: u32,
    /// What the last attempt's handler said.
    pub last_error: Option<String>,
    /// When it was committed.
    pub received_at: SystemTime,
}

/// How full the inbox is: what the metrics and alerts read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxStats {
    /// Deliveries waiting for a worker (or for their next attempt).
    pub pending: u64,
    /// Deliveries a worker holds now.
    pub leased: u64,
    /// Dead letters.
    pub dead: u64,
    /// When the oldest delivery not yet handled (pending or leased) was committed.
    pub oldest_unhandled: Option<SystemTime>,
}

/// What a worker asks of [`WorkerStore::claim`](crate::WorkerStore::claim).
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// The workers' name: each delivery's lease is `{owner}:{attempt}`, so that an attempt
    /// whose lease lapsed never acts on a later attempt's.
    pub owner: &'a str,
    /// Now, by the caller's clock.
    pub now: SystemTime,
    /// When the leases taken end unless renewed.
    pub lease_until: SystemTime,
    /// The most deliveries to take.
    pub limit: usize,
    /// The most deliveries of one tenant on live leases (across every instance).
    pub tenant_concurrency: u64,
    /// A delivery whose lease lapsed on its last attempt (its worker died) becomes a dead
    /// letter, kept until `dead_until`, rather than being taken again.
    pub max_attempts: u32,
    /// Until when a dead letter is kept.
    pub dead_until: SystemTime,
    /// Where this claim starts the rotation of tenants with equal turns (any number: a claim's
    /// own, so that no tenant is always first).
    pub rotation: u32,
}

/// A free worker's offer to take a delivery with its commit
/// ([`WorkerStore::commit_and_lease`](crate::WorkerStore::commit_and_lease)): the lease the
/// delivery's first attempt would hold if the commit accepts it, rather than a claim leasing
/// it after.
#[derive(Debug, Clone, Copy)]
pub struct LeaseOffer<'a> {
    /// The first attempt's lease (`{owner}:1`).
    pub lease: &'a str,
    /// When it ends unless renewed.
    pub lease_until: SystemTime,
    /// The most deliveries of one tenant on live leases (across every instance), as the
    /// claim counts them.
    pub tenant_concurrency: u64,
}

/// A delivery an attempt holds: its id and the attempt's lease (`{owner}:{attempt}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The delivery id.
    pub id: String,
    /// The attempt's lease.
    pub lease: String,
}

/// What an attempt came to, as [`WorkerStore::record`](crate::WorkerStore::record) writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler succeeded: the delivery is handled.
    Handled,
    /// The handler failed with `error`: the delivery is due again at `retry_at`, or for
    /// `None` a dead letter kept until `dead_until`.
    Failed {
        /// What the handler said: the workers keep at most 500 bytes of it, its NULs
        /// replaced by U+FFFD.
        error: String,
        /// When the delivery is due again; `None`: never (a dead letter).
        retry_at: Option<SystemTime>,
        /// Until when the dead letter is kept; read only when `retry_at` is `None`.
        dead_until: SystemTime,
    },
}

/// Milliseconds since the Unix epoch: how the stores keep times.
pub(crate) fn millis(time: SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The time `millis` milliseconds after the Unix epoch.
pub(crate) fn from_millis(millis: i64) -> SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}
