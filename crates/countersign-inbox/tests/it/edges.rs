//! Exactly once at the edges: a spooled delivery drained after its id was forgotten, a worker
//! that cannot renew its lease, a success after the delivery was buried, the retry horizon,
//! and the inbox's own errors kept from a tenant's dead letters.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use countersign::testing::TestKit;
use countersign_inbox::{
    Backoff, ClaimRequest, Commit, DeadLetter, Inbox, InboxDelivery, InboxStats, InboxStore,
    MAYBE_HANDLED, OperatorStore, Provider, Retried, Spool, SqliteInbox, StoreError,
    StoreErrorKind, WorkerStore, rusqlite,
};
use serde_json::json;

use crate::inbox::{BoxError, publish, recorder, send, sqlite, until};

/// A SQLite inbox with faults: a commit that lands and then reports a timeout (the database
/// committed, the answer was lost), and renewals that fail.
#[derive(Clone)]
struct Faulty {
    inner: SqliteInbox,
    commit_lands_then_fails: Arc<AtomicBool>,
    renewals_fail: Arc<AtomicBool>,
    /// The purges asked for.
    purges: Arc<AtomicUsize>,
}

impl Faulty {
    fn new(inner: SqliteInbox) -> Self {
        Self {
            inner,
            commit_lands_then_fails: Arc::default(),
            renewals_fail: Arc::default(),
            purges: Arc::default(),
        }
    }
}

fn timeout() -> StoreError {
    StoreError::new(StoreErrorKind::Timeout, "did not answer in time")
}

impl WorkerStore for Faulty {
    async fn commit(
        &self,
        delivery: &InboxDelivery,
        expires_at: SystemTime,
        tenant_limit: Option<u64>,
    ) -> Result<Commit, StoreError> {
        let committed = self.inner.commit(delivery, expires_at, tenant_limit).await;
        if self.commit_lands_then_fails.load(Ordering::SeqCst) {
            return Err(timeout());
        }
        committed
    }
    async fn set_aside(
        &self,
        delivery: &InboxDelivery,
        note: &str,
        dead_until: SystemTime,
    ) -> Result<Commit, StoreError> {
        self.inner.set_aside(delivery, note, dead_until).await
    }
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<InboxDelivery>, StoreError> {
        self.inner.claim(request).await
    }
    async fn renew(&self, id: &str, lease: &str, until: SystemTime) -> Result<bool, StoreError> {
        if self.renewals_fail.load(Ordering::SeqCst) {
            return Err(timeout());
        }
        self.inner.renew(id, lease, until).await
    }
    async fn complete(&self, id: &str, lease: &str) -> Result<bool, StoreError> {
        self.inner.complete(id, lease).await
    }
    async fn fail(
        &self,
        id: &str,
        lease: &str,
        error: &str,
        retry_at: Option<SystemTime>,
        dead_until: SystemTime,
    ) -> Result<bool, StoreError> {
        self.inner
            .fail(id, lease, error, retry_at, dead_until)
            .await
    }
    async fn crowded(&self, threshold: u64) -> Result<Vec<Option<String>>, StoreError> {
        self.inner.crowded(threshold).await
    }
    async fn purge(&self, now: SystemTime) -> Result<u64, StoreError> {
        self.purges.fetch_add(1, Ordering::SeqCst);
        self.inner.purge(now).await
    }
    async fn stats(&self) -> Result<InboxStats, StoreError> {
        self.inner.stats().await
    }
}

impl OperatorStore for Faulty {
    async fn dead_letters(
        &self,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner.dead_letters(tenant, limit).await
    }
    async fn retry(
        &self,
        tenant: Option<&str>,
        id: &str,
        now: SystemTime,
        tenant_limit: Option<u64>,
    ) -> Result<Retried, StoreError> {
        self.inner.retry(tenant, id, now, tenant_limit).await
    }
    async fn known(&self, ids: &[String]) -> Result<Vec<bool>, StoreError> {
        self.inner.known(ids).await
    }
    async fn purged_up_to(&self) -> Result<Option<SystemTime>, StoreError> {
        self.inner.purged_up_to().await
    }
}

/// The kit's stack's dead letters once there is one, for at most 3 s.
async fn dead_letters_when_any<St: InboxStore>(inbox: &Inbox<St>) -> Vec<DeadLetter> {
    for _ in 0..300 {
        let dead = inbox.dead_letters(TestKit::STACK, 10).await.unwrap();
        if !dead.is_empty() {
            return dead;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Vec::new()
}

/// A server whose Contentstack webhook route answers from `inbox`.
async fn serve_faulty(kit: &TestKit, inbox: &Inbox<Faulty>) -> String {
    serve_faulty_with(kit, inbox, kit.webhook_verifier()).await
}

/// The same, with signatures acceptable for `tolerance` only.
async fn serve_faulty_within(kit: &TestKit, inbox: &Inbox<Faulty>, tolerance: Duration) -> String {
    let verifier = kit
        .webhook_verifier()
        .with_tolerance(tolerance)
        .with_future_skew(Duration::ZERO);
    serve_faulty_with(kit, inbox, verifier).await
}

async fn serve_faulty_with(
    kit: &TestKit,
    inbox: &Inbox<Faulty>,
    verifier: countersign::contentstack::WebhookVerifier,
) -> String {
    let app = axum::Router::new().route(
        "/webhooks/contentstack",
        axum::routing::post_service(inbox.acknowledge()).layer(
            countersign::ContentstackWebhookLayer::new(verifier, kit.contentstack_keys()),
        ),
    );
    format!("http://{}", crate::serve(app).await)
}

/// Instance A's commit reaches the database but A sees a timeout, so A spools the delivery and
/// answers 200. Instance B handles it, and later forgets its id. A, cut off all that time,
/// drains at last: the delivery must not run a second time. It is set aside as a dead letter
/// that says it may have been handled (the rule: a spooled delivery older than half the retry
/// horizon is never run; ids are remembered for the whole horizon).
#[tokio::test]
async fn a_spooled_delivery_drained_after_its_id_was_forgotten_is_set_aside_never_run_again() {
    let kit = TestKit::new();
    let path = sqlite("late-drain");
    let spool_dir = path.with_file_name("spool");
    let faulty = Faulty::new(SqliteInbox::open(&path).unwrap());
    faulty.commit_lands_then_fails.store(true, Ordering::SeqCst);
    // The id's memory scaled down: a 1 s signature window (no future skew), no margin, and a
    // 1.2 s horizon.
    let horizon = Duration::from_millis(1_200);
    let a = Inbox::new(faulty.clone())
        .with_spool(Spool::open(&spool_dir).unwrap())
        .with_retry_horizon(horizon)
        .with_margin(Duration::ZERO)
        .with_poll_interval(Duration::from_millis(20));
    let base = serve_faulty_within(&kit, &a, Duration::from_secs(1)).await;
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1));
    assert_eq!(
        send(&base, request).await.0,
        200,
        "spooled and acknowledged"
    );

    // B, on the same database, handles it and (much later, by its clock) forgets the id.
    let b_store = SqliteInbox::open(&path).unwrap();
    let b = Inbox::new(b_store.clone()).with_poll_interval(Duration::from_millis(20));
    let (seen, handler) = recorder();
    let b_workers = b.work(1, handler);
    until(|| seen.lock().unwrap().len() == 1).await;
    b_workers.shutdown(Duration::from_secs(1)).await;
    let later = SystemTime::now() + Duration::from_secs(24 * 3600);
    assert_eq!(b_store.purge(later).await.unwrap(), 1, "B forgot the id");

    // A's spooled copy has waited past half the horizon when A reconnects.
    tokio::time::sleep(horizon / 2).await;
    faulty
        .commit_lands_then_fails
        .store(false, Ordering::SeqCst);
    let record = Arc::clone(&seen);
    let _a_workers = a.work(1, move |delivery: InboxDelivery| {
        record.lock().unwrap().push((delivery.id, delivery.attempt));
        std::future::ready(Ok::<(), BoxError>(()))
    });
    let dead = dead_letters_when_any(&a).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.lock().unwrap().len(), 1, "handled once, by B only");
    assert_eq!(dead.len(), 1, "set aside for the operator");
    assert_eq!(dead[0].last_error.as_deref(), Some(MAYBE_HANDLED));
    assert_eq!(
        Spool::open(&spool_dir).unwrap().len(),
        0,
        "the spool let go of it"
    );
}

/// A delivery drained within the horizon whose commit had landed is a duplicate of its row:
/// committed once, handled once, however often the spool's copy comes back.
#[tokio::test]
async fn a_spooled_delivery_whose_commit_landed_is_a_duplicate_when_drained() {
    let kit = TestKit::new();
    let path = sqlite("landed-drain");
    let faulty = Faulty::new(SqliteInbox::open(&path).unwrap());
    faulty.commit_lands_then_fails.store(true, Ordering::SeqCst);
    let inbox = Inbox::new(faulty.clone())
        .with_spool(Spool::open(path.with_file_name("spool")).unwrap())
        .with_poll_interval(Duration::from_millis(20));
    let base = serve_faulty(&kit, &inbox).await;
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1));
    assert_eq!(send(&base, request).await.0, 200);
    faulty
        .commit_lands_then_fails
        .store(false, Ordering::SeqCst);
    let (seen, handler) = recorder();
    let _workers = inbox.work(2, handler);
    until(|| seen.lock().unwrap().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(
        inbox
            .dead_letters(TestKit::STACK, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Renewals fail (the database unreachable from this worker): the handler must stop before
/// the lease lapses, since another worker then takes the delivery over. Its effect happens
/// once, by the attempt that took over.
#[tokio::test]
async fn a_worker_that_cannot_renew_its_lease_stops_its_handler_before_another_takes_over() {
    let kit = TestKit::new();
    let faulty = Faulty::new(SqliteInbox::open(sqlite("lost-lease")).unwrap());
    faulty.renewals_fail.store(true, Ordering::SeqCst);
    let inbox = Inbox::new(faulty.clone())
        .with_lease(Duration::from_millis(600))
        .with_poll_interval(Duration::from_millis(20));
    let base = serve_faulty(&kit, &inbox).await;
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1));
    assert_eq!(send(&base, request).await.0, 200);
    let effects = Arc::new(Mutex::new(Vec::new()));
    let write = Arc::clone(&effects);
    let _workers = inbox.work(2, move |delivery: InboxDelivery| {
        let write = Arc::clone(&write);
        async move {
            if delivery.attempt == 1 {
                // Slow: still running long after its lease could no longer be renewed.
                tokio::time::sleep(Duration::from_millis(1_500)).await;
            }
            write.lock().unwrap().push(delivery.attempt);
            Ok::<(), BoxError>(())
        }
    });
    until(|| !effects.lock().unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    assert_eq!(
        *effects.lock().unwrap(),
        [2],
        "the first attempt was stopped; only the takeover's effect happened"
    );
}

/// The last attempt's lease lapses while its handler still runs, and the delivery is buried as
/// a dead letter; then the handler succeeds. The success is recorded (the dead letter is
/// handled), so a tenant cannot retry it into a second run.
#[tokio::test]
async fn a_success_after_the_delivery_was_buried_is_recorded_and_cannot_be_retried() {
    let store = SqliteInbox::open(sqlite("late-success")).unwrap();
    let now = SystemTime::now();
    let far = now + Duration::from_secs(3600);
    let delivery = InboxDelivery {
        id: "d1".to_owned(),
        provider: Provider::Contentstack,
        tenant: Some("blt-a".to_owned()),
        body: bytes::Bytes::from_static(b"{}"),
        signed_headers: Vec::new(),
        received_at: now,
        attempt: 0,
    };
    assert_eq!(
        store.commit(&delivery, far, None).await.unwrap(),
        Commit::New
    );
    let claim = |owner: &'static str, lease: Duration| {
        let now = SystemTime::now();
        ClaimRequest {
            owner,
            now,
            lease_until: now + lease,
            limit: 1,
            tenant_concurrency: 2,
            max_attempts: 1,
            dead_until: now + Duration::from_secs(3600),
            rotation: 0,
        }
    };
    let taken = store
        .claim(claim("a", Duration::from_millis(1)))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Its lease lapsed on the last attempt: the next claim buries it.
    assert!(
        store
            .claim(claim("b", Duration::from_secs(30)))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.dead_letters(Some("blt-a"), 10).await.unwrap().len(),
        1
    );
    assert!(
        store.complete("d1", "a:1").await.unwrap(),
        "the late success is recorded"
    );
    assert!(
        store.complete("d1", "a:1").await.unwrap(),
        "marked again by the same attempt (its first answer lost): still its own"
    );
    assert!(
        !store.complete("d1", "b:1").await.unwrap(),
        "never another's"
    );
    assert!(
        store
            .dead_letters(Some("blt-a"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .retry(Some("blt-a"), "d1", SystemTime::now(), None)
            .await
            .unwrap(),
        Retried::NotFound,
        "nothing to run twice"
    );
}

/// Contentful signs every retry afresh with the same idempotency key, up to 24 h later with a
/// custom policy: the id is remembered for the retry horizon (an hour by default, a row
/// without its body), not just the signature's window and margin.
#[tokio::test]
async fn a_contentful_delivery_is_remembered_for_the_retry_horizon_without_its_body() {
    let kit = TestKit::new();
    let path = sqlite("horizon");
    let store = SqliteInbox::open(&path).unwrap();
    let inbox = Inbox::new(store.clone()).with_poll_interval(Duration::from_millis(20));
    let base = crate::inbox::serve(&kit, &inbox).await;
    let event = || {
        kit.contentful_app_event(
            "/contentful/events",
            "ContentManagement.Entry.publish",
            r#"{"sys":{"id":"e1"}}"#,
            "key-horizon",
        )
    };
    assert_eq!(send(&base, event()).await.0, 200);
    let (seen, handler) = recorder();
    let workers = inbox.work(1, handler);
    until(|| seen.lock().unwrap().len() == 1).await;
    workers.shutdown(Duration::from_secs(1)).await;
    // Ten minutes on, long past the signature's window and the margin: still remembered.
    let now = SystemTime::now();
    assert_eq!(
        store.purge(now + Duration::from_secs(600)).await.unwrap(),
        0
    );
    assert_eq!(
        send(&base, event()).await,
        (200, json!({"status": "duplicate"})),
        "a retry signed afresh"
    );
    let connection = rusqlite::Connection::open(&path).unwrap();
    let body: Option<Vec<u8>> = connection
        .query_row("SELECT body FROM countersign_inbox", [], |row| row.get(0))
        .unwrap();
    assert_eq!(body, None, "a handled delivery keeps its id, not its body");
    assert_eq!(
        store.purge(now + Duration::from_secs(3_700)).await.unwrap(),
        1,
        "forgotten after the horizon"
    );
}

/// A handler in the inbox's transaction whose "handled" fails on the inbox's own database: the
/// tenant's dead letter says so in a fixed text, never the database's error (which names its
/// tables, and may name hosts).
#[tokio::test]
async fn a_tenants_dead_letter_never_shows_the_inbox_databases_own_error() {
    let kit = TestKit::new();
    let inbox = Inbox::new(SqliteInbox::open(sqlite("raw-error")).unwrap())
        .with_poll_interval(Duration::from_millis(20))
        .with_backoff(Backoff::new(
            Duration::from_millis(10),
            1,
            Duration::from_millis(10),
            1,
        ));
    let base = crate::inbox::serve(&kit, &inbox).await;
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1));
    assert_eq!(send(&base, request).await.0, 200);
    let ran = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&ran);
    let _workers = inbox.work_in_transaction(1, move |db, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        // Marking it handled then fails in the inbox's own statement (rolled back with the rest).
        db.execute_batch("ALTER TABLE countersign_inbox RENAME TO gone")?;
        Ok(())
    });
    let dead = dead_letters_when_any(&inbox).await;
    assert_eq!(dead.len(), 1);
    let said = dead[0].last_error.clone().unwrap();
    assert!(!said.contains("countersign_inbox"), "{said}");
    assert_eq!(said, "the inbox's database failed during the attempt");
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

/// A handler in the inbox's SQLite transaction holds the database, so no renewal gets through
/// while it runs; it must not be stopped for that (its effects commit only with its lease),
/// and its failure is recorded with its backoff rather than lost to a lapse.
#[tokio::test]
async fn a_handler_in_the_transaction_longer_than_its_lease_runs_on_and_its_failure_waits_its_backoff()
 {
    let kit = TestKit::new();
    let inbox = Inbox::new(SqliteInbox::open(sqlite("long-transaction")).unwrap())
        .with_lease(Duration::from_millis(600))
        .with_poll_interval(Duration::from_millis(20))
        .with_backoff(Backoff::new(
            Duration::from_secs(30),
            1,
            Duration::from_secs(30),
            3,
        ));
    let base = crate::inbox::serve(&kit, &inbox).await;
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1));
    assert_eq!(send(&base, request).await.0, 200);
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    let _workers = inbox.work_in_transaction(2, move |_, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1_000));
        Err("the handler's own failure".into())
    });
    until(|| attempts.load(Ordering::SeqCst) == 1).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "not tried again before its backoff"
    );
    let stats = inbox.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.leased),
        (1, 0),
        "its failure was recorded"
    );
}

/// Workers that always find something to take still purge: the purge waited for a claim that
/// came back empty, so a pool behind a backlog for hours kept every handled delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_that_never_run_out_of_work_still_purge() {
    let store = Faulty::new(SqliteInbox::open(sqlite("purge-busy")).unwrap());
    let purges = Arc::clone(&store.purges);
    let inbox = Inbox::new(store.clone())
        .without_tenant_limit()
        .with_tenant_concurrency(8)
        .with_purge_every(Duration::from_millis(100));
    for n in 0..60 {
        committed(&store, &format!("d{n}")).await;
    }
    // One worker, 50 ms a delivery: three seconds of backlog, every claim finds one.
    let handled = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&handled);
    let workers = inbox.work(1, move |_: InboxDelivery| {
        let count = Arc::clone(&count);
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            count.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(())
        }
    });
    until(|| purges.load(Ordering::SeqCst) >= 2).await;
    let stats = inbox.stats().await.unwrap();
    assert!(
        stats.pending > 0,
        "purged twice before the backlog ran out: {stats:?}, {} handled",
        handled.load(Ordering::SeqCst)
    );
    workers.shutdown(Duration::from_secs(1)).await;
}

/// The purge does not wait for a free worker: with the only one held by a handler that hangs,
/// the handled deliveries past their time are still forgotten on schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_runs_while_every_worker_is_held() {
    let path = sqlite("purge-held");
    let store = Faulty::new(SqliteInbox::open(&path).unwrap());
    let purges = Arc::clone(&store.purges);
    let inbox = Inbox::new(store.clone()).with_purge_every(Duration::from_millis(100));
    committed(&store, "hangs").await;
    let started = Arc::new(AtomicBool::new(false));
    let running = Arc::clone(&started);
    let workers = inbox.work(1, move |_: InboxDelivery| {
        running.store(true, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, BoxError>(())
        }
    });
    until(|| started.load(Ordering::SeqCst)).await;
    // A handled delivery past its time, written while the worker is held.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "INSERT INTO countersign_inbox (id, provider, state, due_at, received_at, expires_at)
             VALUES ('old', 'contentful', 'done', 1000, 1000, 1000)",
        )
        .unwrap();
    let before = purges.load(Ordering::SeqCst);
    until(|| purges.load(Ordering::SeqCst) >= before + 2).await;
    assert_eq!(store.known(&["old".to_owned()]).await.unwrap(), [false]);
    workers.stop();
}

/// A purge of more rows than one transaction forgets goes in several, and its mark covers
/// the latest of them: here 12,000 handled deliveries past their time, in three.
#[tokio::test]
async fn a_large_purge_goes_in_batches_and_marks_the_latest_it_forgot() {
    let path = sqlite("purge-batches");
    let store = SqliteInbox::open(&path).unwrap();
    assert_eq!(store.purged_up_to().await.unwrap(), None);
    let mut connection = rusqlite::Connection::open(&path).unwrap();
    let insert = connection.transaction().unwrap();
    insert
        .execute_batch(
            "WITH RECURSIVE n(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM n
                                         WHERE value < 12000)
             INSERT INTO countersign_inbox (id, provider, state, due_at, received_at, expires_at)
             SELECT 'old-' || value, 'contentful', 'done', 1000, value, 1000 FROM n",
        )
        .unwrap();
    insert.commit().unwrap();
    assert_eq!(store.purge(SystemTime::now()).await.unwrap(), 12_000);
    assert_eq!(
        store.purged_up_to().await.unwrap(),
        Some(SystemTime::UNIX_EPOCH + Duration::from_millis(12_000))
    );
    assert_eq!(store.known(&["old-1".to_owned()]).await.unwrap(), [false]);
    assert_eq!(store.purge(SystemTime::now()).await.unwrap(), 0);
}

/// A delivery of no tenant `id`, committed to `store` now and remembered for an hour.
async fn committed(store: &impl WorkerStore, id: &str) {
    let delivery = InboxDelivery {
        id: id.to_owned(),
        provider: Provider::Contentful,
        tenant: None,
        body: bytes::Bytes::from_static(b"{}"),
        signed_headers: Vec::new(),
        received_at: SystemTime::now(),
        attempt: 0,
    };
    let remember = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(
        store.commit(&delivery, remember, None).await.unwrap(),
        Commit::New
    );
}
