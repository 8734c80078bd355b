//! A durable inbox for [`countersign`]'s verified deliveries: a verified delivery is committed, then acknowledged at
//! once, and the application's handler runs it later from the inbox until it succeeds once.
//!
//! A provider stops sending when its deliveries fail: Contentstack disables a webhook after 10
//! failures in a row, and waits 30 s per attempt. A handler that calls an API, or a database
//! that restarts, turns into those failures. With an inbox, the request path only verifies
//! and commits (a few milliseconds), and the handler's own slowness or failures stay here:
//!
//! - [`Inbox::acknowledge`] is the route's endpoint, behind a verification layer: it commits
//!   the verified delivery (body, provider, tenant, the signed facts) keyed by its delivery id,
//!   then answers 200 `{"status":"accepted"}`. A delivery id already there is answered 200
//!   `{"status":"duplicate"}`: the inbox is also the replay store, for as long as the
//!   signature stays acceptable plus a margin.
//! - [`Inbox::work`] starts workers that hand each delivery to your handler. A worker holds a
//!   delivery on a lease, renewed while the handler runs: a worker that dies lets its lease
//!   lapse, and another takes the delivery over. A handler that fails is tried again after a
//!   growing wait ([`Backoff`]), and so is one that runs longer than the attempt timeout (5 min);
//!   after the last attempt the delivery is a dead letter, listed by [`Inbox::dead_letters`]
//!   and tried again by [`Inbox::retry`] (per tenant), kept for 7 days.
//! - With a [`Spool`], an instance keeps accepting while the inbox's database is down: it
//!   writes each verified delivery to a bounded directory of its own (flushed to disk before
//!   the answer) and moves them into the inbox, idempotently, once the database is back.
//! - Tenants are kept apart: a worker takes each tenant's oldest due delivery before a second of
//!   any, no tenant runs more than [`DEFAULT_TENANT_CONCURRENCY`] deliveries at once across the
//!   fleet (so one whose handlers hang holds two workers, not all), and a tenant with
//!   [`DEFAULT_TENANT_LIMIT`] deliveries waiting has its next ones refused with 503
//!   `inbox_tenant_full`, so that none fills the inbox.
//!
//! The handler is called at least once per delivery, and again only after a failure, a
//! timeout or a lost lease ([`Inbox::work`] says when): make its effects idempotent by
//! [`InboxDelivery::id`].
//!
//! ```no_run
//! use axum::{Router, routing::post_service};
//! use countersign::ContentstackWebhookLayer;
//! use countersign::contentstack::{StaticKeys, WebhookVerifier};
//! use countersign_inbox::{Inbox, InboxDelivery, InboxStore, Workers};
//!
//! // `store`: `SqliteInbox::open("data/inbox.sqlite3")?`, or `PostgresInbox::new(pool)`.
//! // Serve the router while you hold the workers: dropping them stops them.
//! fn app(store: impl InboxStore, keys: StaticKeys) -> (Router, Workers) {
//!     let inbox = Inbox::new(store);
//!     // The handler runs here, not on the request path.
//!     let workers = inbox.work(4, |delivery: InboxDelivery| async move {
//!         let webhook: serde_json::Value = delivery.json()?;
//!         println!("{} {}", delivery.id, webhook["event"]);
//!         Ok(())
//!     });
//!     let router = Router::new().route(
//!         "/webhooks/contentstack",
//!         post_service(inbox.acknowledge())
//!             .layer(ContentstackWebhookLayer::new(WebhookVerifier::new(), keys)),
//!     );
//!     (router, workers)
//! }
//! ```

//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `sqlite` | [`SqliteInbox`]: the inbox in a SQLite file, for one instance (rusqlite, SQLite bundled) |
//! | `postgres` | [`PostgresInbox`]: the inbox in PostgreSQL, shared by a fleet (your deadpool pool) |
//! | `reconcile` | [`Inbox::reconcile_contentstack`], [`Inbox::reconcile_contentful`]: the providers' records read and reconciled (`countersign`'s `reconcile`) |
//! | `postgres-url` | [`pool_of_url`]: a pool from a `postgres://` URL, TLS by its `sslmode` (rustls) |
//! | `metrics` | the series of [`metrics`] through the `metrics` facade |
//! | `aws-lc` (default), `rust-crypto` | countersign's crypto backend, followed |

#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod acknowledge;
mod admission;
mod batch;
mod delivery;
mod drain;
mod inbox;
pub mod metrics;
mod offer;
mod reconcile;
mod shared;
mod spool;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
mod store;
mod worker;

pub use acknowledge::Acknowledge;
pub use countersign_core::Provider;
pub use countersign_core::inbox::{Backoff, remember_for};
pub use countersign_core::reconcile::{Answer, Attempt, RecordedDelivery, Unusable};
pub use countersign_core::replay::{StoreError, StoreErrorKind};
pub use delivery::{
    BoxError, ClaimRequest, Commit, DeadLetter, GiveUp, Held, InboxDelivery, InboxStats,
    LEASE_GIVEN_BACK, LeaseOffer, MAYBE_HANDLED, Outcome, Retried,
};
pub use inbox::{
    DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_DEAD_LETTER_TTL, DEFAULT_LEASE, DEFAULT_MARGIN, DEFAULT_POLL,
    DEFAULT_PURGE_EVERY, DEFAULT_RETRY_HORIZON, DEFAULT_TENANT_CONCURRENCY, DEFAULT_TENANT_LIMIT,
    Inbox,
};
pub use reconcile::Found;
#[cfg(feature = "reconcile")]
pub use reconcile::{Action, ReconcileError, Report};
#[cfg(feature = "sqlite")]
pub use rusqlite;
pub use spool::{DEFAULT_SPOOL_BYTES, DEFAULT_SPOOL_ENTRIES, Spool};
#[cfg(feature = "postgres-url")]
pub use sql::postgres::connect::{ROOT_CERT_VAR, pool_of_url, pool_of_url_trusting};
#[cfg(feature = "postgres")]
pub use sql::postgres::{PostgresInbox, TransactionFuture};
#[cfg(feature = "sqlite")]
pub use sql::sqlite::SqliteInbox;
pub use store::{InboxStore, OperatorStore, WorkerStore};
#[cfg(feature = "postgres")]
pub use tokio_postgres;
pub use worker::Workers;
