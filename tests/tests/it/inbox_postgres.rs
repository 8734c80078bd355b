//! A fleet's inbox in one real PostgreSQL: three instances acknowledge and handle deliveries
//! from one table, each delivery handled once though sent to several instances, retried after
//! a failure, taken over from instances whose workers die; and 503 while the database is down.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::post_service;
use countersign::ContentstackWebhookLayer;
use countersign::contentstack::WebhookBody;
use countersign::testing::TestKit;
use countersign_inbox::{Backoff, Inbox, InboxDelivery, PostgresInbox, Spool, Workers};
use http::Request;
use serde_json::json;

mod handoff;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the handlers saw: per delivery id, the attempts that failed and those that succeeded.
#[derive(Default)]
struct Seen {
    failed: HashMap<String, u32>,
    handled: HashMap<String, u32>,
}

/// A delivery of `provider` and `tenant` with `body`, received now, as a store is given it.
fn delivery(
    id: impl Into<String>,
    provider: countersign_inbox::Provider,
    tenant: Option<&str>,
    body: &[u8],
) -> InboxDelivery {
    InboxDelivery {
        id: id.into(),
        provider,
        tenant: tenant.map(str::to_owned),
        body: body.to_vec().into(),
        signed_headers: Vec::new(),
        received_at: std::time::SystemTime::now(),
        attempt: 0,
    }
}

struct Instance {
    base: String,
    inbox: Inbox<PostgresInbox>,
    workers: Option<Workers>,
}

async fn instance(
    url: &str,
    kit: &TestKit,
    seen: &Arc<Mutex<Seen>>,
    spool: Option<&std::path::Path>,
) -> Instance {
    let pool = example_support::postgres::pool(url).unwrap();
    let mut inbox = Inbox::new(PostgresInbox::new(pool))
        .with_lease(Duration::from_millis(600))
        .with_poll_interval(Duration::from_millis(50))
        .with_backoff(Backoff::new(
            Duration::from_millis(50),
            2,
            Duration::from_millis(200),
            5,
        ));
    if let Some(dir) = spool {
        // Small, so that its bounds are reached: 16 deliveries, 2 per tenant.
        inbox = inbox.with_spool(Spool::with_limits(dir, 32, 1 << 20).unwrap());
    }
    let base = serve(&inbox, kit).await;
    let seen = Arc::clone(seen);
    let workers = inbox.work(4, move |delivery: InboxDelivery| {
        let seen = Arc::clone(&seen);
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if delivery.body.windows(6).any(|w| w == b"poison") {
                return Err(BoxError::from("a body this handler cannot take"));
            }
            let mut seen = seen.lock().unwrap();
            // Every seventh delivery's first attempt fails, as a handler whose API is down.
            let flaky = u8::from_str_radix(&delivery.id[..2], 16)
                .unwrap()
                .is_multiple_of(7);
            if flaky && delivery.attempt == 1 {
                *seen.failed.entry(delivery.id).or_default() += 1;
                return Err(BoxError::from("the API is down"));
            }
            *seen.handled.entry(delivery.id).or_default() += 1;
            Ok(())
        }
    });
    Instance {
        base,
        inbox,
        workers: Some(workers),
    }
}

/// A server on a free port acknowledging Contentstack webhooks into `inbox`: its base URL.
async fn serve(inbox: &Inbox<PostgresInbox>, kit: &TestKit) -> String {
    let app = Router::new().route(
        "/webhooks",
        post_service(inbox.acknowledge()).layer(ContentstackWebhookLayer::new(
            kit.webhook_verifier(),
            kit.contentstack_keys(),
        )),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn send(base: &str, request: Request<Body>) -> (u16, serde_json::Value) {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let response = reqwest::Client::new()
        .post(format!("{base}{}", parts.uri))
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_shares_one_postgresql_inbox_and_handles_each_delivery_once() {
    const DELIVERIES: usize = 120;
    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let url = pg.url();
    let kit = TestKit::new().at(std::time::SystemTime::now());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut fleet = Vec::new();
    let spool = std::env::temp_dir().join(format!("countersign-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    for n in 0..3 {
        let spool = (n == 2).then_some(spool.as_path());
        fleet.push(instance(&url, &kit, &seen, spool).await);
    }
    let mut duplicates = 0;
    for n in 0..DELIVERIES {
        let body = WebhookBody::new("entry", "publish")
            .with_api_key(format!("blt-stack-{}", n % 5))
            .with_data(&json!({"entry": {"uid": format!("blt{n}")}}));
        let first = &fleet[n % 3];
        let request = kit.contentstack_webhook("/webhooks", &body);
        assert_eq!(send(&first.base, request).await.0, 200);
        // The provider's retry reaches another instance: acknowledged, not committed again.
        let again = &fleet[(n + 1) % 3];
        let (status, answer) =
            send(&again.base, kit.contentstack_webhook("/webhooks", &body)).await;
        assert_eq!(status, 200);
        if answer["status"] == "duplicate" {
            duplicates += 1;
        }
        if n == DELIVERIES / 2 {
            // One instance's workers die mid-run: what they held is taken over.
            fleet[0].workers.take();
        }
    }
    assert_eq!(duplicates, DELIVERIES, "every retry was a duplicate");
    for _ in 0..1_000 {
        let stats = fleet[1].inbox.stats().await.unwrap();
        if stats.pending + stats.leased == 0 && seen.lock().unwrap().handled.len() == DELIVERIES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.handled.len(), DELIVERIES, "none lost");
        assert!(
            seen.handled.values().all(|&times| times == 1),
            "each handled once: {:?}",
            seen.handled.values().filter(|&&t| t != 1).count()
        );
        assert!(!seen.failed.is_empty(), "some first attempts failed");
        assert!(
            seen.failed.keys().all(|id| seen.handled.contains_key(id)),
            "and were retried"
        );
        eprintln!(
            "fleet inbox: {DELIVERIES} deliveries, {duplicates} duplicates acknowledged, {} retried after a failure, each handled once",
            seen.failed.len()
        );
    }

    // A delivery its handler can never take: a dead letter after the last attempt, which only
    // its own tenant lists and retries.
    let poison = WebhookBody::new("entry", "publish")
        .with_api_key("blt-stack-3")
        .with_data(&json!({"entry": {"uid": "poison"}}));
    assert_eq!(
        send(
            &fleet[1].base,
            kit.contentstack_webhook("/webhooks", &poison)
        )
        .await
        .0,
        200
    );
    let mut dead = Vec::new();
    for _ in 0..500 {
        dead = fleet[2]
            .inbox
            .dead_letters("blt-stack-3", 10)
            .await
            .unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 5);
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("a body this handler cannot take")
    );
    assert_eq!(fleet[1].inbox.all_dead_letters(10).await.unwrap(), dead);
    assert!(
        fleet[1]
            .inbox
            .dead_letters("blt-stack-4", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        fleet[1]
            .inbox
            .retry("blt-stack-4", &dead[0].id)
            .await
            .unwrap(),
        countersign_inbox::Retried::NotFound
    );
    assert_eq!(
        fleet[1]
            .inbox
            .retry("blt-stack-3", &dead[0].id)
            .await
            .unwrap(),
        countersign_inbox::Retried::Due
    );
    assert_eq!(fleet[1].inbox.stats().await.unwrap().dead, 0, "due again");

    // The database goes down. Without a spool: 503 with Retry-After, so the provider retries.
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let during = |stack: &str, n: u32| {
        let body = WebhookBody::new("entry", "publish")
            .with_api_key(stack)
            .with_data(&json!({"entry": {"uid": format!("during-{n}")}}));
        kit.contentstack_webhook("/webhooks", &body)
    };
    let (status, problem) = send(&fleet[1].base, during("blt-stack-0", 0)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (503, Some("inbox_unavailable"))
    );
    // With one, accepted: each waits on disk, up to the tenant's share of the spool.
    // (An eighth of the 28 entries outside the reserve: 3.)
    for n in 1..=3 {
        assert_eq!(send(&fleet[2].base, during("blt-stack-0", n)).await.0, 200);
    }
    let (status, problem) = send(&fleet[2].base, during("blt-stack-0", 9)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (503, Some("inbox_unavailable")),
        "the tenant's share is used up"
    );
    assert_eq!(
        send(&fleet[2].base, during("blt-stack-1", 4)).await.0,
        200,
        "another tenant's is not"
    );

    // The instance restarts before the database is back: its spool is still there.
    drop(fleet.pop());
    fleet.push(instance(&url, &kit, &seen, Some(&spool)).await);
    let pg = tokio::task::spawn_blocking(move || {
        pg.resume();
        pg
    })
    .await
    .unwrap();
    for _ in 0..1_000 {
        if seen.lock().unwrap().handled.len() == DELIVERIES + 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.handled.len(),
            DELIVERIES + 4,
            "the spooled deliveries were handled"
        );
        assert!(seen.handled.values().all(|&times| times == 1));
    }
    let mut status = 0;
    for _ in 0..50 {
        status = send(&fleet[1].base, during("blt-stack-0", 0)).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200, "the inbox recovers by itself");
    drop(pg);
}

/// At a cold start, many commits at once: the table is made on a connection of its own, so
/// requests that hold every connection of the pool do not leave it none (they did: each took
/// one, then waited for the schema, which waited for a connection, until every request timed
/// out, again and again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_commits_at_a_cold_start_make_the_table_and_all_go_in() {
    use countersign_inbox::{Commit, Provider, WorkerStore};

    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    // A pool of 16 connections, and 40 commits before the table exists.
    let pool = example_support::postgres::pool(&pg.url()).unwrap();
    let store = PostgresInbox::new(pool)
        .with_table("cold_start_inbox")
        .unwrap();
    let expires = std::time::SystemTime::now() + Duration::from_secs(600);
    let commits: Vec<_> = (0..40)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let tenant = format!("blt-stack-{}", n % 4);
                let delivery = delivery(
                    format!("delivery-{n}"),
                    Provider::Contentstack,
                    Some(&tenant),
                    b"{}",
                );
                store.commit(&delivery, expires, Some(1_000)).await
            })
        })
        .collect();
    for commit in commits {
        assert_eq!(commit.await.unwrap().unwrap(), Commit::New);
    }
    assert_eq!(store.stats().await.unwrap().pending, 40);
}

/// Group commit: the commits made while one is on its way go in one statement, each answered
/// as it would have been alone; a member PostgreSQL refuses fails alone, not its group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_made_while_one_is_on_its_way_share_one_statement_each_answered_as_alone() {
    use countersign_inbox::{Commit, Provider, StoreError, WorkerStore};

    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let pool = example_support::postgres::pool(&pg.url()).unwrap();
    let store = PostgresInbox::new(pool.clone())
        .with_table("group_inbox")
        .unwrap();
    let far = std::time::SystemTime::now() + Duration::from_secs(3600);
    let delivery =
        |id: &str, tenant: &str| delivery(id, Provider::Contentstack, Some(tenant), b"{}");
    assert_eq!(
        store
            .commit(&delivery("made", "blt-c"), far, None)
            .await
            .unwrap(),
        Commit::New
    );
    // Each INSERT statement on the table counted by a trigger.
    let admin = pool.get().await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE statements (n SERIAL);
             CREATE FUNCTION count_statement() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO statements DEFAULT VALUES; RETURN NULL; END $$;
             CREATE TRIGGER counted AFTER INSERT ON group_inbox
               FOR EACH STATEMENT EXECUTE FUNCTION count_statement();",
        )
        .await
        .unwrap();
    let statements = || async {
        let row = admin
            .query_one("SELECT count(*) FROM statements", &[])
            .await
            .unwrap();
        row.get::<_, i64>(0)
    };

    // `members` committed while the table is locked: the first commit's statement waits for
    // the lock, and every commit made meanwhile waits for the next group.
    let commit_while_locked = |members: Vec<(InboxDelivery, Option<u64>)>| {
        let (store, pool) = (store.clone(), pool.clone());
        async move {
            let mut locker = pool.get().await.unwrap();
            let lock = locker.transaction().await.unwrap();
            lock.batch_execute("LOCK TABLE group_inbox IN SHARE ROW EXCLUSIVE MODE")
                .await
                .unwrap();
            let first = tokio::spawn({
                let store = store.clone();
                let first = delivery(&format!("first-{}", members.len()), "blt-c");
                async move { store.commit(&first, far, None).await }
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            let commits: Vec<_> = members
                .into_iter()
                .map(|(delivery, limit)| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let answer = store.commit(&delivery, far, limit).await;
                        (delivery.id, answer)
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(300)).await;
            lock.commit().await.unwrap();
            assert_eq!(first.await.unwrap().unwrap(), Commit::New);
            let mut answers: Vec<(String, Result<Commit, StoreError>)> = Vec::new();
            for commit in commits {
                answers.push(commit.await.unwrap());
            }
            answers
        }
    };
    let of = |answers: &[(String, Result<Commit, StoreError>)], id: &str| -> Vec<Option<Commit>> {
        let mut of: Vec<_> = answers
            .iter()
            .filter(|(of, _)| of == id)
            .map(|(_, answer)| answer.as_ref().ok().copied())
            .collect();
        of.sort_by_key(|answer| format!("{answer:?}"));
        of
    };

    let before = statements().await;
    let mut members: Vec<(InboxDelivery, Option<u64>)> = (0..20)
        .map(|i| (delivery(&format!("d{i}"), "blt-a"), None))
        .collect();
    members.push((delivery("d3", "blt-a"), None)); // the same delivery twice in one group
    members.push((delivery("made", "blt-c"), None)); // one committed before
    members.extend((0..3).map(|i| (delivery(&format!("b{i}"), "blt-b"), Some(2))));
    let answers = commit_while_locked(members).await;
    assert_eq!(
        statements().await - before,
        2,
        "the first commit's statement, then the 25 commits made while it waited in one"
    );
    for i in (0..20).filter(|i| *i != 3) {
        assert_eq!(of(&answers, &format!("d{i}")), [Some(Commit::New)]);
    }
    assert_eq!(
        of(&answers, "d3"),
        [Some(Commit::Duplicate), Some(Commit::New)]
    );
    assert_eq!(of(&answers, "made"), [Some(Commit::Duplicate)]);
    let limited: Vec<_> = (0..3)
        .flat_map(|i| of(&answers, &format!("b{i}")))
        .collect();
    assert_eq!(
        limited.iter().filter(|a| **a == Some(Commit::New)).count(),
        2,
        "a tenant's limit counts the group's earlier rows: {limited:?}"
    );
    assert!(limited.contains(&Some(Commit::TenantFull)));

    // A tenant whose id PostgreSQL will not store (a NUL, which JSON allows) fails alone: the
    // others in its group are committed.
    let before = statements().await;
    let mut members: Vec<(InboxDelivery, Option<u64>)> = (0..4)
        .map(|i| (delivery(&format!("e{i}"), "blt-a"), None))
        .collect();
    members.push((delivery("evil", "blt\0evil"), None));
    let answers = commit_while_locked(members).await;
    for i in 0..4 {
        assert_eq!(of(&answers, &format!("e{i}")), [Some(Commit::New)]);
    }
    assert_eq!(of(&answers, "evil"), [None]);
    assert_eq!(
        statements().await - before,
        5,
        "the first commit's, then its group's members one by one"
    );
    assert_eq!(store.stats().await.unwrap().pending, 29);
    drop(pg);
}

/// The workers' bookkeeping of many deliveries in one statement: each answered by its own
/// lease, a handled one, a failed one, a renewed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_and_renewals_of_many_deliveries_each_answer_for_their_own_lease() {
    use countersign_inbox::{ClaimRequest, Held, Outcome, Provider, WorkerStore};

    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let pool = example_support::postgres::pool(&pg.url()).unwrap();
    let store = PostgresInbox::new(pool).with_table("outcomes").unwrap();
    let far = std::time::SystemTime::now() + Duration::from_secs(3600);
    for n in 0..4 {
        let delivery = delivery(format!("d{n}"), Provider::Contentful, Some("space"), b"{}");
        store.commit(&delivery, far, None).await.unwrap();
    }
    let now = std::time::SystemTime::now();
    let claimed = store
        .claim(ClaimRequest {
            owner: "w",
            now,
            lease_until: now + Duration::from_secs(60),
            limit: 4,
            tenant_concurrency: 4,
            max_attempts: 5,
            dead_until: far,
            rotation: 0,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    let held = |id: &str, lease: &str| Held {
        id: id.to_owned(),
        lease: lease.to_owned(),
    };
    let renewed = store
        .renew_all(
            &[held("d0", "w:1"), held("d1", "x:1"), held("d2", "w:1")],
            far,
        )
        .await
        .unwrap();
    assert_eq!(renewed, [true, false, true]);
    let failed = |retry_at| Outcome::Failed {
        error: "no".to_owned(),
        retry_at,
        dead_until: far,
    };
    let recorded = store
        .record(&[
            (held("d0", "w:1"), Outcome::Handled),
            (held("d1", "x:1"), Outcome::Handled),
            (held("d2", "w:1"), failed(None)),
            (held("d3", "w:1"), failed(Some(now))),
            (held("d1", "w:1"), Outcome::Handled),
        ])
        .await
        .unwrap();
    assert_eq!(recorded, [true, false, true, true, true]);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.pending, stats.leased, stats.dead), (1, 0, 1));
    // The same attempt's "handled" again (its answer was lost) is still its own.
    let again = store.record(&[(held("d0", "w:1"), Outcome::Handled)]).await;
    assert_eq!(again.unwrap(), [true]);
    drop(pg);
}

/// PostgreSQL keeps one generic plan per prepared statement, made after a few runs with the
/// table's size at that moment. Made on a new table, plans that read the whole table (or a
/// tenant's whole backlog, then sorted it) looked cheapest, and were kept while the table
/// grew. Here every plan is generic (`plan_cache_mode`), made on a table of a few rows, on the
/// one connection the store has; then the table grows to 20,000 rows behind the store's back,
/// and its commits, claims, renewals and outcomes must still read a few rows each, as
/// PostgreSQL's own counters show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_made_on_a_new_table_read_a_few_rows_once_it_has_grown() {
    use countersign_inbox::{Commit, Held, OperatorStore, Outcome, Provider, WorkerStore};

    let (pg, pool, store) = generic_plans("grown").await;
    let far = std::time::SystemTime::now() + Duration::from_secs(3600);
    let delivery = |id: String, tenant: Option<&str>| {
        delivery(id, Provider::Contentful, tenant, &[b'x'; 1000])
    };
    // Made now, so that no plan is dropped later: no automatic ANALYZE will come, and
    // `ALTER TABLE` itself would have PostgreSQL plan afresh.
    let first = delivery("first".to_owned(), None);
    assert_eq!(store.commit(&first, far, None).await.unwrap(), Commit::New);
    let admin = example_support::postgres::pool(&pg.url())
        .unwrap()
        .get()
        .await
        .unwrap();
    admin
        .batch_execute("ALTER TABLE grown SET (autovacuum_enabled = false)")
        .await
        .unwrap();

    // Twelve commits at once (in groups), of a tenant and of none.
    let commit_round = |round: String| {
        let store = store.clone();
        async move {
            let mut commits = tokio::task::JoinSet::new();
            for n in 0..12 {
                let (store, tenant) = (store.clone(), [Some("space-a"), None][n % 2]);
                let delivery = delivery(format!("{round}-{n}"), tenant);
                commits.spawn(async move { store.commit(&delivery, far, None).await });
            }
            for answer in commits.join_all().await {
                assert_eq!(answer.unwrap(), Commit::New);
            }
        }
    };
    // A claim of 8, its leases renewed, half handled and half due again.
    let claim_round = || {
        let store = store.clone();
        async move {
            let now = std::time::SystemTime::now();
            let claimed = claim_now(&store, 8, 1_000, far).await;
            assert_eq!(claimed.len(), 8);
            let held: Vec<_> = claimed
                .iter()
                .map(|d| Held {
                    id: d.id.clone(),
                    lease: format!("w:{}", d.attempt),
                })
                .collect();
            let renewed = store.renew_all(&held, far).await.unwrap();
            assert_eq!(renewed, [true; 8]);
            let outcomes: Vec<_> = held
                .into_iter()
                .enumerate()
                .map(|(n, held)| {
                    let outcome = if n % 2 == 0 {
                        Outcome::Handled
                    } else {
                        Outcome::Failed {
                            error: "later".to_owned(),
                            retry_at: Some(now),
                            dead_until: far,
                        }
                    };
                    (held, outcome)
                })
                .collect();
            let recorded = store.record(&outcomes).await.unwrap();
            assert_eq!(recorded, [true; 8]);
        }
    };
    for round in 0..10 {
        commit_round(format!("small-{round}")).await;
        claim_round().await;
    }

    // 10,000 handled deliveries and a backlog of 10,000, over two tenants and none (so that
    // a tenant's handled ones come before its waiting ones, and before the next tenant's).
    admin
        .batch_execute(
            "INSERT INTO grown (id, provider, tenant, body, state, due_at, received_at,
                                expires_at)
             SELECT 'old-' || n, 'contentful',
                    CASE n % 3 WHEN 0 THEN 'space-a' WHEN 1 THEN 'space-b' END,
                    CASE WHEN n % 2 = 0 THEN convert_to(repeat('x', 1000), 'UTF8') END,
                    CASE WHEN n % 2 = 0 THEN 'pending' ELSE 'done' END,
                    CASE WHEN n % 2 = 0 THEN n ELSE 9000000000000 END, n, 9000000000000
               FROM generate_series(1, 20000) n",
        )
        .await
        .unwrap();
    let read = || reads(&pool, &admin, "grown");
    let before = read().await;
    for round in 0..5 {
        commit_round(format!("grown-{round}")).await;
        claim_round().await;
    }
    // About 130 a round: 16 candidates of each tenant ranked, their rows locked by id (with
    // the versions that earlier claims left), the leases counted, the renewals and outcomes
    // found by id. A plan that read a backlog reads over 3,000 a round.
    read_by_index("5 rounds", &before, &read().await, 2_000);

    // The workers' measure of the inbox (every 5 s) reads the deliveries not handled, about
    // 10,000 here, and none of the 10,000 handled ones kept for duplicates.
    let before = read().await;
    let stats = store.stats().await.unwrap();
    assert!(stats.pending >= 10_000, "{stats:?}");
    read_by_index("the stats", &before, &read().await, 11_000);

    // The purge reads what it forgets (nothing here: each handled delivery is kept an hour or
    // more), not each handled delivery kept.
    let before = read().await;
    assert_eq!(store.purge(std::time::SystemTime::now()).await.unwrap(), 0);
    read_by_index("the purge", &before, &read().await, 100);
    // Once they are past their time, the 10,000 handled ones go, in batches.
    let later = std::time::UNIX_EPOCH + Duration::from_millis(9_000_000_000_001);
    let forgotten = store.purge(later).await.unwrap();
    assert!(forgotten >= 10_000, "{forgotten} forgotten");
    assert_eq!(store.known(&["old-1".to_owned()]).await.unwrap(), [false]);
    drop(pg);
}

/// Each claim and outcome leaves its delivery's old row version, and its index entries,
/// behind until a vacuum. The claim counts each tenant's live leases (`state = 'leased' AND
/// due_at > now`), and a bitmap scan of the index of states visited every version leased
/// within the lease's length, in every claim: 11 ms of a 13 ms claim after 6 s of
/// `scripts/bench-e2e`'s load. Read entry by entry, the first claim marks them dead and the
/// next ones skip them. Here 3,000 deliveries were leased until an hour from now and then
/// handled; five claims after the first read a few entries of that index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_do_not_read_again_the_leases_that_earlier_claims_left_behind() {
    use countersign_inbox::{Commit, Held, Outcome, Provider, WorkerStore};

    let (pg, pool, store) = generic_plans("left_behind").await;
    let far = std::time::SystemTime::now() + Duration::from_secs(3600);
    for n in 0..24 {
        let delivery = delivery(format!("due-{n}"), Provider::Contentful, None, b"{}");
        assert_eq!(
            store.commit(&delivery, far, None).await.unwrap(),
            Commit::New
        );
    }
    let admin = example_support::postgres::pool(&pg.url())
        .unwrap()
        .get()
        .await
        .unwrap();
    // Leased until an hour from now, then handled: 3,000 versions of `leased` left behind.
    let hour_from_now = far
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    admin
        .batch_execute(&format!(
            "ALTER TABLE left_behind SET (autovacuum_enabled = false);
             INSERT INTO left_behind (id, provider, state, due_at, lease_owner, received_at,
                                      expires_at)
             SELECT 'old-' || n, 'contentful', 'leased', {hour_from_now}, 'gone:1', n,
                    9000000000000
               FROM generate_series(1, 3000) n;
             UPDATE left_behind SET state = 'done' WHERE id LIKE 'old-%'"
        ))
        .await
        .unwrap();
    let claim = || {
        let store = store.clone();
        async move {
            let claimed = claim_now(&store, 4, 8, far).await;
            assert_eq!(claimed.len(), 4);
            let outcomes: Vec<_> = claimed
                .iter()
                .map(|d| {
                    let held = Held {
                        id: d.id.clone(),
                        lease: format!("w:{}", d.attempt),
                    };
                    (held, Outcome::Handled)
                })
                .collect();
            assert_eq!(store.record(&outcomes).await.unwrap(), [true; 4]);
        }
    };
    claim().await;
    let before = reads(&pool, &admin, "left_behind").await;
    for _ in 0..5 {
        claim().await;
    }
    let after = reads(&pool, &admin, "left_behind").await;
    let index = "left_behind_due";
    let read = after.1[index] - before.1[index];
    // With a bitmap scan: over 15,000 (each claim read the 3,000 again).
    assert!(read < 300, "{read} entries of {index} read by five claims");
    drop(pg);
}

/// A throwaway PostgreSQL and an inbox in its table `table`, on a pool of one connection
/// whose every statement gets a generic plan at once (`plan_cache_mode`), as PostgreSQL's
/// plan cache settles on after a few runs.
async fn generic_plans(
    table: &str,
) -> (
    countersign_tests::Postgres,
    deadpool_postgres::Pool,
    PostgresInbox,
) {
    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let generic = format!(
        "{}?options=-c%20plan_cache_mode%3Dforce_generic_plan",
        pg.url()
    );
    let pool = example_support::postgres::pool(&generic).unwrap();
    pool.resize(1);
    let store = PostgresInbox::new(pool.clone()).with_table(table).unwrap();
    (pg, pool, store)
}

/// What worker `w` claims now, up to `limit`, on leases of a minute.
async fn claim_now(
    store: &PostgresInbox,
    limit: usize,
    tenant_concurrency: u64,
    dead_until: std::time::SystemTime,
) -> Vec<InboxDelivery> {
    use countersign_inbox::{ClaimRequest, WorkerStore};
    let now = std::time::SystemTime::now();
    store
        .claim(ClaimRequest {
            owner: "w",
            now,
            lease_until: now + Duration::from_secs(60),
            limit,
            tenant_concurrency,
            max_attempts: 5,
            dead_until,
            rotation: 0,
        })
        .await
        .unwrap()
}

/// Asserts that what `what` did between the readings `before` and `after` read the table
/// through its indexes only (no sequential scan), fewer than `most` index entries in all.
fn read_by_index(what: &str, before: &Reads, after: &Reads, most: i64) {
    let scans = (after.0.0 - before.0.0, after.0.1 - before.0.1);
    assert_eq!(
        scans,
        (0, 0),
        "sequential scans of the grown table by {what}, and rows they read"
    );
    let read_from: HashMap<&String, i64> = after
        .1
        .iter()
        .map(|(index, rows)| (index, rows - before.1.get(index).unwrap_or(&0)))
        .collect();
    let index_rows: i64 = read_from.values().sum();
    assert!(
        index_rows < most,
        "{index_rows} index entries read by {what}: {read_from:?}"
    );
}

/// A reading of [`reads`].
type Reads = ((i64, i64), HashMap<String, i64>);

/// What the store's connections read from `table` so far: its sequential scans and the rows
/// they read, and the entries read from each of its indexes, as PostgreSQL's counters say.
/// `pool` has one connection, idle: it reports its counts when asked.
async fn reads(
    pool: &deadpool_postgres::Pool,
    admin: &tokio_postgres::Client,
    table: &str,
) -> Reads {
    pool.get()
        .await
        .unwrap()
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    admin
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .unwrap();
    let scans = admin
        .query_one(
            "SELECT seq_scan, seq_tup_read FROM pg_stat_user_tables WHERE relname = $1",
            &[&table],
        )
        .await
        .unwrap();
    let indexes = admin
        .query(
            "SELECT indexrelname::TEXT, idx_tup_read FROM pg_stat_user_indexes
              WHERE relname = $1",
            &[&table],
        )
        .await
        .unwrap();
    let indexes = indexes.iter().map(|row| (row.get(0), row.get(1))).collect();
    ((scans.get(0), scans.get(1)), indexes)
}

/// The table is made in a task of its own, which an operation that runs out of time does not
/// cancel: on a large table an index takes longer to build than an operation may wait (5 s),
/// and a making cancelled by each operation in turn was rolled back every time. Here another
/// session holds the lock that making the table takes, for longer than an operation waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_is_made_even_when_the_operation_that_began_it_runs_out_of_time() {
    use countersign_inbox::{Commit, Provider, StoreErrorKind, WorkerStore};

    let (pg, admin) = postgres().await;
    let pool = example_support::postgres::pool(&pg.url()).unwrap();
    let store = PostgresInbox::new(pool.clone())
        .with_table("slow_to_make")
        .unwrap();
    let exists = || async {
        let row = admin
            .query_one("SELECT to_regclass('slow_to_make') IS NOT NULL", &[])
            .await
            .unwrap();
        row.get::<_, bool>(0)
    };
    admin
        .batch_execute("SELECT pg_advisory_lock(7262071)")
        .await
        .unwrap();
    let delivery = delivery("d1", Provider::Contentful, Some("space"), b"{}");
    let far = std::time::SystemTime::now() + Duration::from_secs(3600);
    let late = store.commit(&delivery, far, None).await.unwrap_err();
    assert_eq!(late.kind(), StoreErrorKind::Timeout);
    assert!(!exists().await);
    admin
        .batch_execute("SELECT pg_advisory_unlock(7262071)")
        .await
        .unwrap();
    // No other operation: the making goes on by itself.
    let mut made = false;
    for _ in 0..50 {
        made = exists().await;
        if made {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(made, "the table was not made once the lock was free");
    assert_eq!(
        store.commit(&delivery, far, None).await.unwrap(),
        Commit::New
    );
    drop(pg);
}

/// A throwaway PostgreSQL and a superuser's connection to it.
async fn postgres() -> (countersign_tests::Postgres, deadpool_postgres::Client) {
    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let admin = example_support::postgres::pool(&pg.url())
        .unwrap()
        .get()
        .await
        .unwrap();
    (pg, admin)
}

/// The client backends other than `admin`'s own, with their states.
async fn backends(admin: &deadpool_postgres::Client) -> Vec<String> {
    admin
        .query(
            "SELECT state FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// A claim sends `BEGIN`, its settings and its statements in one round trip, and `COMMIT`
/// once they have answered. Cut off by its caller while blocked on a lock, it leases nothing:
/// its connection (the pool's only one here) is closed rather than put back, the server gives
/// up on its statement after 5 s even while the lock is held, and the next claim takes the
/// delivery as its first attempt. (Had the `COMMIT` gone with the statements, the cut-off claim would have leased
/// it to nobody, and it would have waited out that lease and lost an attempt.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_cut_off_by_its_caller_leases_nothing_and_leaves_no_transaction_open() {
    use countersign_inbox::{Commit, Provider, WorkerStore};

    let (pg, admin) = postgres().await;
    let pool = example_support::postgres::pool(&pg.url()).unwrap();
    pool.resize(1);
    let store = PostgresInbox::new(pool.clone());
    let far = std::time::SystemTime::now() + Duration::from_secs(3600);
    let claim = || claim_now(&store, 4, 4, far);
    // Once with nothing to take, so that the claim's statements are prepared on the
    // connection: the cut-off claim sends its transaction at once, then waits for the lock.
    assert!(claim().await.is_empty());
    let delivery = delivery("d1", Provider::Contentful, Some("space"), b"{}");
    assert_eq!(
        store.commit(&delivery, far, None).await.unwrap(),
        Commit::New
    );

    // Another session holds the table, as a long `ALTER TABLE` would.
    let (locker, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    locker
        .batch_execute("BEGIN; LOCK TABLE countersign_inbox IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let cut_off = tokio::time::timeout(Duration::from_secs(2), claim()).await;
    assert!(cut_off.is_err(), "the claim waited for the lock");

    // The server gives up on the claim's statement itself (`statement_timeout`, 5 s), while
    // the lock is still held: claims cut off one after another do not each leave a
    // connection waiting.
    let waiting = || async {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let mut still = waiting().await;
    for _ in 0..500 {
        if still == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        still = waiting().await;
    }
    assert_eq!(still, 0, "the cut-off claim still waits for the lock");
    locker.batch_execute("COMMIT").await.unwrap();
    drop(locker);

    // Its connection is closed, not put back in the pool.
    let mut left = backends(&admin).await;
    for _ in 0..250 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = backends(&admin).await;
    }
    assert!(
        left.is_empty(),
        "the cut-off claim's connection stayed: {left:?}"
    );
    let row = admin
        .query_one(
            "SELECT state, attempts FROM countersign_inbox WHERE id = 'd1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1)),
        ("pending".to_owned(), 0),
        "the cut-off claim was rolled back"
    );
    let again = claim().await;
    assert_eq!(
        again
            .iter()
            .map(|d| (d.id.as_str(), d.attempt))
            .collect::<Vec<_>>(),
        [("d1", 1)]
    );
    drop(pg);
}

/// The bookkeeping sends `BEGIN`, its statements and `COMMIT` in one round trip, and a
/// statement refused before it was sent (here a lease's end that the table, made by someone
/// else, keeps as a 32-bit `due_at`) still has its `COMMIT` sent: the pool's only connection
/// goes back idle, not idle in a transaction that the next commit would have joined without
/// waiting for the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_refused_before_it_is_sent_leaves_no_transaction_open() {
    use countersign_inbox::{Held, WorkerStore};

    let (pg, admin) = postgres().await;
    admin
        .batch_execute(
            "CREATE TABLE odd_inbox (
                id TEXT PRIMARY KEY, provider TEXT NOT NULL, tenant TEXT, body BYTEA,
                signed_headers TEXT, state TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0,
                due_at INTEGER NOT NULL, lease_owner TEXT, received_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL, last_error TEXT)",
        )
        .await
        .unwrap();
    let pool = example_support::postgres::pool(&pg.url()).unwrap();
    pool.resize(1);
    let store = PostgresInbox::new(pool.clone())
        .with_table("odd_inbox")
        .unwrap();
    let held = [Held {
        id: "d1".to_owned(),
        lease: "w:1".to_owned(),
    }];
    let far = std::time::SystemTime::now() + Duration::from_secs(3600);
    let refused = store.renew_all(&held, far).await.unwrap_err();
    assert!(
        refused.to_string().contains("error serializing parameter"),
        "refused before it was sent: {refused}"
    );

    let mut states = backends(&admin).await;
    for _ in 0..250 {
        if !states.iter().any(|state| state == "active") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        states = backends(&admin).await;
    }
    assert_eq!(
        states,
        ["idle"],
        "the pool's connection, after the refused statement"
    );
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_keeps_the_latest_receipt_it_forgot() {
    use countersign_inbox::{ClaimRequest, Commit, OperatorStore, Provider, WorkerStore};

    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let store = PostgresInbox::new(example_support::postgres::pool(&pg.url()).unwrap());
    let now = std::time::SystemTime::now();
    let soon = now + Duration::from_secs(60);
    assert_eq!(
        store.purged_up_to().await.unwrap(),
        None,
        "nothing forgotten yet"
    );
    let mut received = Vec::new();
    for (n, age) in [(0, 30), (1, 10)] {
        let mut delivery = delivery(format!("d{n}"), Provider::Contentstack, Some("blt1"), b"{}");
        delivery.received_at = now - Duration::from_secs(age);
        received.push(delivery.received_at);
        assert_eq!(
            store.commit(&delivery, soon, None).await.unwrap(),
            Commit::New
        );
    }
    let claimed = store
        .claim(ClaimRequest {
            owner: "w",
            now,
            lease_until: soon,
            limit: 2,
            tenant_concurrency: 2,
            max_attempts: 5,
            dead_until: soon,
            rotation: 0,
        })
        .await
        .unwrap();
    for delivery in &claimed {
        let lease = format!("w:{}", delivery.attempt);
        assert!(store.complete(&delivery.id, &lease).await.unwrap());
    }
    // Nothing is due to be forgotten yet: no mark.
    assert_eq!(store.purge(now).await.unwrap(), 0);
    assert_eq!(store.purged_up_to().await.unwrap(), None);
    assert_eq!(store.purge(soon).await.unwrap(), 2);
    let up_to = store.purged_up_to().await.unwrap().unwrap();
    let millis =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    assert_eq!(
        millis(up_to),
        millis(received[1]),
        "the latest receipt forgotten"
    );
    // A later purge of older rows never lowers it.
    let mut old = delivery("d2", Provider::Contentstack, Some("blt1"), b"{}");
    old.received_at = now - Duration::from_secs(3600);
    store.commit(&old, now, None).await.unwrap();
    let dead_now = store
        .claim(ClaimRequest {
            owner: "x",
            now,
            lease_until: soon,
            limit: 1,
            tenant_concurrency: 2,
            max_attempts: 1,
            dead_until: now,
            rotation: 0,
        })
        .await
        .unwrap();
    assert_eq!(dead_now.len(), 1);
    assert!(
        store
            .fail("d2", &format!("x:{}", dead_now[0].attempt), "no", None, now)
            .await
            .unwrap()
    );
    assert_eq!(store.purge(soon).await.unwrap(), 1, "the dead letter");
    assert_eq!(
        millis(store.purged_up_to().await.unwrap().unwrap()),
        millis(received[1])
    );
}

/// A dead letter retried while a purge is about to forget it stays, due: the purge's delete
/// checks again, on the row as the retry left it, that it is past its time. (Its conditions
/// were once only on the candidates the purge had read, and the retried delivery was
/// deleted: never handled, though its retry was answered.) Here the retry's transaction holds
/// the row until the purge waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_retried_while_the_purge_runs_is_not_forgotten() {
    use countersign_inbox::{OperatorStore, WorkerStore};

    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let store = PostgresInbox::new(example_support::postgres::pool(&pg.url()).unwrap())
        .with_table("retried")
        .unwrap();
    store.stats().await.unwrap();
    let admin = example_support::postgres::pool(&pg.url()).unwrap();
    let (retry, watch) = (admin.get().await.unwrap(), admin.get().await.unwrap());
    retry
        .batch_execute(
            "INSERT INTO retried (id, provider, state, due_at, received_at, expires_at)
             VALUES ('dl', 'contentful', 'dead', 1000, 1000, 1000)",
        )
        .await
        .unwrap();
    retry
        .batch_execute("BEGIN; UPDATE retried SET state = 'pending', due_at = 2000 WHERE id = 'dl'")
        .await
        .unwrap();
    let purging = tokio::spawn({
        let store = store.clone();
        async move { store.purge(std::time::SystemTime::now()).await }
    });
    // The purge read the dead letter as it was, and waits for the row.
    let mut waiting = false;
    for _ in 0..250 {
        let row = watch
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(waiting, "the purge never waited for the retried row");
    retry.batch_execute("COMMIT").await.unwrap();
    assert_eq!(purging.await.unwrap().unwrap(), 0, "nothing forgotten");
    let state = watch
        .query_one("SELECT state FROM retried WHERE id = 'dl'", &[])
        .await
        .unwrap();
    assert_eq!(state.get::<_, String>(0), "pending");
    assert_eq!(store.known(&["dl".to_owned()]).await.unwrap(), [true]);
    assert_eq!(store.purged_up_to().await.unwrap(), None);
    drop(pg);
}
