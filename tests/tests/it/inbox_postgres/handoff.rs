//! A delivery committed while a worker of the instance is free goes in leased to that worker,
//! in the same statement, and runs without a claim; with anything due before it, or its
//! tenant at its concurrency, it goes in pending for the tenants' fair claim; and when its
//! workers stopped before it reached them, the lease is given back.

use std::sync::Arc;
use std::time::Duration;

use countersign::contentstack::WebhookBody;
use countersign::testing::TestKit;
use countersign_inbox::{Inbox, InboxDelivery, PostgresInbox, Workers};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

use super::{postgres, send};

/// An instance of the inbox over `url`, polling only once a minute (so that nothing below is
/// found by a poll), and the server acknowledging its webhooks.
async fn instance(url: &str, kit: &TestKit, concurrency: u64) -> (String, Inbox<PostgresInbox>) {
    let pool = example_support::postgres::pool(url).unwrap();
    let inbox = Inbox::new(PostgresInbox::new(pool))
        .with_lease(Duration::from_secs(5))
        .with_poll_interval(Duration::from_secs(60))
        .with_tenant_concurrency(concurrency);
    let base = super::serve(&inbox, kit).await;
    // The table, before the workers' first claim.
    inbox.stats().await.unwrap();
    (base, inbox)
}

/// Workers that report each attempt (tenant, attempt) and hold those of `gated` until
/// `gate` has a permit for them.
fn workers(
    inbox: &Inbox<PostgresInbox>,
    gated: &'static str,
    gate: &Arc<Semaphore>,
) -> (Workers, mpsc::UnboundedReceiver<(String, u32)>) {
    let (seen, attempts) = mpsc::unbounded_channel();
    let gate = Arc::clone(gate);
    let workers = inbox.work(2, move |delivery: InboxDelivery| {
        let (seen, gate) = (seen.clone(), Arc::clone(&gate));
        async move {
            let tenant = delivery.tenant.clone().unwrap_or_default();
            seen.send((tenant.clone(), delivery.attempt)).unwrap();
            if tenant == gated {
                gate.acquire().await.unwrap().forget();
            }
            Ok(())
        }
    });
    (workers, attempts)
}

/// A webhook of stack `tenant`, its entry `uid`.
fn webhook(kit: &TestKit, tenant: &str, uid: &str) -> http::Request<axum::body::Body> {
    let body = WebhookBody::new("entry", "publish")
        .with_api_key(tenant)
        .with_data(&json!({"entry": {"uid": uid}}));
    kit.contentstack_webhook("/webhooks", &body)
}

/// The state, attempts and last error of the one delivery of `tenant`.
async fn row(admin: &deadpool_postgres::Client, tenant: &str) -> (String, i64, Option<String>) {
    let row = admin
        .query_one(
            "SELECT state, attempts, last_error FROM countersign_inbox WHERE tenant = $1",
            &[&tenant],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// The next attempt the workers report, within `wait`.
async fn next(attempts: &mut mpsc::UnboundedReceiver<(String, u32)>, wait: u64) -> (String, u32) {
    tokio::time::timeout(Duration::from_secs(wait), attempts.recv())
        .await
        .expect("an attempt in time")
        .unwrap()
}

/// A PostgreSQL, a superuser's connection to it, and the URL of a role `app` that may make
/// tables (and be refused UPDATE on its inbox later, so that no claim can take anything).
async fn with_app_role() -> (
    countersign_tests::Postgres,
    deadpool_postgres::Client,
    String,
) {
    let (pg, admin) = postgres().await;
    admin
        .batch_execute("CREATE ROLE app LOGIN; GRANT CREATE ON SCHEMA public TO app")
        .await
        .unwrap();
    let url = pg.url().replace("postgres://postgres@", "postgres://app@");
    (pg, admin, url)
}

/// Waits for the workers' first claim, after which they take commits' offers.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_worker_takes_a_delivery_with_its_commit_and_no_claim_is_needed() {
    let (_pg, admin, url) = with_app_role().await;
    let kit = TestKit::new().at(std::time::SystemTime::now());
    let (base, inbox) = instance(&url, &kit, 8).await;
    let gate = Arc::new(Semaphore::new(0));
    let (_workers, mut attempts) = workers(&inbox, "none", &gate);
    settle().await;
    // From here no claim can take anything: the app may insert and read its inbox, not
    // change it. A delivery reaches a handler only if its commit leased it.
    admin
        .batch_execute("REVOKE UPDATE ON countersign_inbox FROM app")
        .await
        .unwrap();

    assert_eq!(send(&base, webhook(&kit, "blt-first", "e1")).await.0, 200);
    assert_eq!(next(&mut attempts, 5).await, ("blt-first".to_owned(), 1));
    let (state, tried, _) = row(&admin, "blt-first").await;
    assert_eq!(
        (state.as_str(), tried),
        ("leased", 1),
        "leased with its commit"
    );

    // With a delivery due before it (another tenant's, pending), a commit is not leased: it
    // waits for the claim, which takes each tenant's oldest in turn.
    admin
        .execute(
            "INSERT INTO countersign_inbox (id, provider, tenant, body, state, due_at, received_at,
               expires_at) VALUES ('older', 'contentstack', 'blt-older', '\\x7b7d', 'pending', 0, 0,
               9000000000000)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(send(&base, webhook(&kit, "blt-later", "e2")).await.0, 200);
    let (state, tried, _) = row(&admin, "blt-later").await;
    assert_eq!(
        (state.as_str(), tried),
        ("pending", 0),
        "left for the claim"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), attempts.recv())
            .await
            .is_err(),
        "no attempt ran but by a commit's lease"
    );

    // The claim that commit woke failed (no UPDATE), and the claim loop waits a poll interval
    // (a minute) before the next: with nothing due any more, a commit leased to a free worker
    // still runs at once.
    admin
        .execute("DELETE FROM countersign_inbox WHERE state = 'pending'", &[])
        .await
        .unwrap();
    assert_eq!(
        send(&base, webhook(&kit, "blt-meanwhile", "e3")).await.0,
        200
    );
    assert_eq!(
        next(&mut attempts, 5).await,
        ("blt-meanwhile".to_owned(), 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_concurrency_waits_for_the_claim_and_gets_its_turn_as_soon_as_one_ends() {
    let (pg, admin) = postgres().await;
    let kit = TestKit::new().at(std::time::SystemTime::now());
    let (base, inbox) = instance(&pg.url(), &kit, 1).await;
    let gate = Arc::new(Semaphore::new(0));
    let (_workers, mut attempts) = workers(&inbox, "blt-busy", &gate);
    settle().await;

    // The tenant's first runs (held by the handler); its second would pass its concurrency
    // of one, and goes in pending.
    assert_eq!(send(&base, webhook(&kit, "blt-busy", "b1")).await.0, 200);
    assert_eq!(next(&mut attempts, 5).await, ("blt-busy".to_owned(), 1));
    assert_eq!(send(&base, webhook(&kit, "blt-busy", "b2")).await.0, 200);
    let waiting = admin
        .query_one(
            "SELECT count(*) FROM countersign_inbox WHERE tenant = 'blt-busy' AND state = 'pending'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(waiting, 1, "the second waits for a turn");

    // Another tenant's delivery now has a delivery due before it: the claim takes it (its
    // first turn), while the busy tenant's second still waits.
    assert_eq!(send(&base, webhook(&kit, "blt-other", "o1")).await.0, 200);
    assert_eq!(next(&mut attempts, 5).await, ("blt-other".to_owned(), 1));

    // Once that one is handled (and the claim after it found the busy tenant's second
    // still held back), the first attempt ends: the second gets its turn at once, not at
    // the next poll (a minute away).
    for _ in 0..250 {
        if row(&admin, "blt-other").await.0 == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(row(&admin, "blt-other").await.0, "done");
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.add_permits(1);
    assert_eq!(next(&mut attempts, 5).await, ("blt-busy".to_owned(), 1));
    gate.add_permits(1);
}

/// Sends a webhook of `tenant` while the table is locked, so that its commit waits with a free
/// worker's offer in hand; runs `meanwhile` (which stops the workers); then lets the commit
/// through: the request's status.
async fn commit_across<F: std::future::Future<Output = ()>>(
    admin: &mut deadpool_postgres::Client,
    url: &str,
    base: &str,
    request: http::Request<axum::body::Body>,
    meanwhile: F,
) -> u16 {
    let lock = admin.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE countersign_inbox IN SHARE MODE")
        .await
        .unwrap();
    let sent = tokio::spawn({
        let base = base.to_owned();
        async move { send(&base, request).await.0 }
    });
    // The commit waits for the lock (its offer taken before it).
    let watch = example_support::postgres::pool(url)
        .unwrap()
        .get()
        .await
        .unwrap();
    let mut waiting = 0i64;
    for _ in 0..250 {
        waiting = watch
            .query_one("SELECT count(*) FROM pg_locks WHERE NOT granted", &[])
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(waiting > 0, "the commit waits for the lock");
    meanwhile.await;
    lock.commit().await.unwrap();
    sent.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_that_stop_run_what_commits_leased_them_or_give_the_lease_back_when_aborted() {
    let (pg, mut admin) = postgres().await;
    let kit = TestKit::new().at(std::time::SystemTime::now());
    let (base, inbox) = instance(&pg.url(), &kit, 8).await;
    let gate = Arc::new(Semaphore::new(0));

    // Stopped gracefully while a commit holds one of its offers: the commit lands leased,
    // and the workers run it before they are done.
    let (pool, mut attempts) = workers(&inbox, "none", &gate);
    settle().await;
    let shutdown = async {
        tokio::spawn(pool.shutdown(Duration::from_secs(10)));
        // The shutdown under way: offers withdrawn.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let request = webhook(&kit, "blt-graceful", "g1");
    assert_eq!(
        commit_across(&mut admin, &pg.url(), &base, request, shutdown).await,
        200
    );
    assert_eq!(next(&mut attempts, 5).await, ("blt-graceful".to_owned(), 1));

    // Aborted (dropped, as a killed process): the lease is given back, due again at once, and
    // the next workers' claim takes it for its second attempt.
    let (pool, _attempts) = workers(&inbox, "none", &gate);
    settle().await;
    let abort = async {
        pool.stop();
        // The abort done: the pool's tasks dropped.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let request = webhook(&kit, "blt-orphan", "x1");
    assert_eq!(
        commit_across(&mut admin, &pg.url(), &base, request, abort).await,
        200
    );
    let mut given_back = None;
    for _ in 0..100 {
        let now = row(&admin, "blt-orphan").await;
        if now.0 == "pending" {
            given_back = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        given_back,
        Some((
            "pending".to_owned(),
            1,
            Some(countersign_inbox::LEASE_GIVEN_BACK.to_owned())
        ))
    );
    let (_workers, mut attempts) = workers(&inbox, "none", &gate);
    assert_eq!(next(&mut attempts, 5).await, ("blt-orphan".to_owned(), 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_in_one_group_lease_within_each_tenants_concurrency_and_the_free_workers() {
    const TENANTS: usize = 3;
    const EACH: usize = 6;
    let (_pg, admin, url) = with_app_role().await;
    let kit = TestKit::new().at(std::time::SystemTime::now());
    let (base, inbox) = instance(&url, &kit, 2).await;
    let gate = Arc::new(Semaphore::new(0));
    // Four workers, each attempt held: what runs is what the commits leased (three tenants of
    // a concurrency of two could have six).
    let (seen, mut attempts) = mpsc::unbounded_channel();
    let held = Arc::clone(&gate);
    let _workers = inbox.work(4, move |delivery: InboxDelivery| {
        let (seen, held) = (seen.clone(), Arc::clone(&held));
        async move {
            seen.send(delivery.tenant.clone().unwrap_or_default())
                .unwrap();
            held.acquire().await.unwrap().forget();
            Ok(())
        }
    });
    settle().await;
    admin
        .batch_execute("REVOKE UPDATE ON countersign_inbox FROM app")
        .await
        .unwrap();

    // Eighteen at once, six of each of three tenants: they go in groups.
    let mut sent = tokio::task::JoinSet::new();
    for n in 0..TENANTS * EACH {
        let request = webhook(
            &kit,
            &format!("blt-group-{}", n % TENANTS),
            &format!("g{n}"),
        );
        let base = base.clone();
        sent.spawn(async move { send(&base, request).await.0 });
    }
    while let Some(status) = sent.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let leased: Vec<(String, i64)> = admin
        .query(
            "SELECT tenant, count(*) FROM countersign_inbox WHERE state = 'leased'
              GROUP BY tenant ORDER BY tenant",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let total: i64 = admin
        .query_one("SELECT count(*) FROM countersign_inbox", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        total,
        i64::try_from(TENANTS * EACH).unwrap(),
        "all committed"
    );
    assert!(
        leased.iter().all(|(_, n)| *n <= 2),
        "no tenant past its concurrency: {leased:?}"
    );
    assert!(
        leased.iter().map(|(_, n)| n).sum::<i64>() <= 4,
        "none past the free workers: {leased:?}"
    );
    // What ran is exactly what was leased, each on a worker of its own.
    let mut ran = std::collections::HashMap::<String, i64>::new();
    while let Ok(Some(tenant)) =
        tokio::time::timeout(Duration::from_millis(500), attempts.recv()).await
    {
        *ran.entry(tenant).or_default() += 1;
    }
    let ran: Vec<(String, i64)> = {
        let mut ran: Vec<_> = ran.into_iter().collect();
        ran.sort();
        ran
    };
    assert_eq!(ran, leased, "each leased delivery, and only those, ran");
    assert!(!ran.is_empty(), "commits leased some");
    gate.add_permits(TENANTS * EACH);
}
