//! Tenants kept apart in the inbox: none fills it, goes before another, holds every worker, or
//! retries its dead letters past its limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use countersign::testing::TestKit;
use countersign_inbox::{Inbox, InboxDelivery, Retried, SqliteInbox};

use crate::inbox::{BoxError, publish, send, serve, sqlite, until};

#[tokio::test]
async fn one_tenant_can_neither_fill_the_inbox_nor_go_before_another() {
    let kit = TestKit::new();
    let inbox = Inbox::new(SqliteInbox::open(sqlite("tenants")).unwrap()).with_tenant_limit(3);
    let base = serve(&kit, &inbox).await;
    for n in 0..3 {
        let request = kit.contentstack_webhook("/webhooks/contentstack", &publish("blt-noisy", n));
        assert_eq!(send(&base, request).await.0, 200);
    }
    // The tenants near their limit are read again a second after the last reading, by the
    // next commit (the quiet tenant's), off its request: the noisy tenant's commits count then.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let quiet = kit.contentstack_webhook("/webhooks/contentstack", &publish("blt-quiet", 0));
    assert_eq!(send(&base, quiet).await.0, 200, "another tenant is served");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish("blt-noisy", 3));
    let (status, problem) = send(&base, request).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (503, Some("inbox_tenant_full"))
    );

    // The quiet tenant's one delivery, committed last, is in the first batch.
    let order = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&order);
    let _workers = inbox.work(2, move |delivery: InboxDelivery| {
        record
            .lock()
            .unwrap()
            .push(delivery.tenant.clone().unwrap());
        std::future::ready(Ok::<(), BoxError>(()))
    });
    until(|| order.lock().unwrap().len() == 4).await;
    let order = order.lock().unwrap().clone();
    assert!(
        order[..2].contains(&"blt-quiet".to_owned()),
        "each tenant's oldest first: {order:?}"
    );
}

#[tokio::test]
async fn a_tenant_whose_handlers_hang_holds_two_workers_and_the_others_are_served() {
    let kit = TestKit::new();
    let inbox = Inbox::new(SqliteInbox::open(sqlite("hang")).unwrap())
        .with_poll_interval(Duration::from_millis(20));
    let base = serve(&kit, &inbox).await;
    for n in 0..5 {
        let request = kit.contentstack_webhook("/webhooks/contentstack", &publish("blt-slow", n));
        assert_eq!(send(&base, request).await.0, 200);
    }
    let handled = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&handled);
    let _workers = inbox.work(4, move |delivery: InboxDelivery| {
        let tenant = delivery.tenant.clone().unwrap();
        let record = Arc::clone(&record);
        async move {
            if tenant == "blt-slow" {
                std::future::pending::<()>().await;
            }
            record.lock().unwrap().push(tenant);
            Ok::<(), BoxError>(())
        }
    });
    until(|| inbox_leased(&inbox) == 2).await;
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish("blt-quick", 0));
    assert_eq!(send(&base, request).await.0, 200);
    until(|| handled.lock().unwrap().len() == 1).await;
    assert_eq!(*handled.lock().unwrap(), ["blt-quick"]);
    // The handler has returned; its worker marks it handled just after.
    until(|| inbox_leased(&inbox) == 2).await;
    let stats = inbox.stats().await.unwrap();
    assert_eq!(
        (stats.leased, stats.pending),
        (2, 3),
        "the slow tenant holds two workers, no more"
    );
}

/// How many deliveries are leased now (read on a thread of its own, for `until`).
fn inbox_leased(inbox: &Inbox<SqliteInbox>) -> u64 {
    let inbox = inbox.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(inbox.stats())
            .unwrap()
            .leased
    })
    .join()
    .unwrap()
}

#[tokio::test]
async fn retrying_dead_letters_cannot_take_a_tenant_past_its_limit() {
    let kit = TestKit::new();
    let inbox = Inbox::new(SqliteInbox::open(sqlite("retry-limit")).unwrap())
        .with_tenant_limit(1)
        .with_poll_interval(Duration::from_millis(20));
    let base = serve(&kit, &inbox).await;
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 1));
    assert_eq!(send(&base, request).await.0, 200);
    // Its only attempt gives up: a dead letter, which no longer counts toward the limit.
    let workers = inbox.work(1, |_| {
        std::future::ready(Err::<(), BoxError>(
            countersign_inbox::GiveUp::new("not now").into(),
        ))
    });
    for _ in 0..500 {
        if inbox.stats().await.unwrap().dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    workers.shutdown(Duration::from_secs(5)).await;
    let dead = inbox.dead_letters(TestKit::STACK, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    // The tenant fills its one place: the dead letter waits rather than go past it.
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, 2));
    assert_eq!(send(&base, request).await.0, 200);
    assert_eq!(
        inbox.retry(TestKit::STACK, &dead[0].id).await.unwrap(),
        Retried::TenantFull
    );
    assert_eq!(
        inbox.retry_any(&dead[0].id).await.unwrap(),
        Retried::Due,
        "the operator's retry is not limited"
    );
}

#[tokio::test]
async fn a_tenant_read_near_its_limit_is_held_to_it_after_the_reading() {
    let kit = TestKit::new();
    let inbox = Inbox::new(SqliteInbox::open(sqlite("crowded")).unwrap()).with_tenant_limit(4);
    let base = serve(&kit, &inbox).await;
    let deliver = |n: u32| {
        let request =
            kit.contentstack_webhook("/webhooks/contentstack", &publish(TestKit::STACK, n));
        send(&base, request)
    };
    // Half its limit waiting (no workers), then the tenants near their limit are read again.
    for n in 0..2 {
        assert_eq!(deliver(n).await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(deliver(2).await.0, 200, "reads them again");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(deliver(3).await.0, 200);
    let (status, body) = deliver(4).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("inbox_tenant_full")),
        "the fifth is refused: the tenant was read near its limit, so its commits count"
    );
}

/// A tenant id no database should be asked to keep (a NUL, which JSON allows in a stack's
/// `api_key` and PostgreSQL's text refuses; or one past 255 bytes) is refused for good, 422
/// `inbox_tenant_invalid`, never spooled or committed: it cannot fail a group of commits it
/// would share with other tenants.
#[tokio::test]
async fn a_tenant_id_no_database_keeps_is_refused_for_good_and_others_are_served() {
    let kit = TestKit::new();
    let dir = sqlite("invalid-tenant");
    let spool = dir.with_extension("spool");
    let inbox = Inbox::new(SqliteInbox::open(&dir).unwrap())
        .with_spool(countersign_inbox::Spool::open(&spool).unwrap());
    let base = serve(&kit, &inbox).await;
    for stack in ["blt\u{0}evil".to_owned(), "b".repeat(256)] {
        let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(&stack, 0));
        let (status, problem) = send(&base, request).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some("inbox_tenant_invalid")),
            "{stack:?}"
        );
    }
    let longest = "b".repeat(255);
    let request = kit.contentstack_webhook("/webhooks/contentstack", &publish(&longest, 0));
    assert_eq!(send(&base, request).await.0, 200, "255 bytes are kept");
    let stats = inbox.stats().await.unwrap();
    assert_eq!(stats.pending, 1, "only the storable tenant's delivery");
    assert_eq!(
        std::fs::read_dir(&spool).map_or(0, |entries| entries.count()),
        0,
        "nothing spooled"
    );
}

/// An app of one tenant (one space, one stack) has its deliveries handled as fast as its
/// concurrency allows, not one claim per poll interval: when every due delivery's tenant is
/// at its concurrency with this instance's attempts, the end of the next attempt frees a turn
/// and wakes the workers. (With a poll interval of a minute, 30 deliveries took 15 minutes.)
#[tokio::test]
async fn a_tenant_at_its_concurrency_gets_its_next_turn_when_an_attempt_ends() {
    let kit = TestKit::new();
    let inbox = Inbox::new(SqliteInbox::open(sqlite("one-tenant")).unwrap())
        .with_poll_interval(Duration::from_secs(60));
    let base = serve(&kit, &inbox).await;
    for n in 0..30 {
        let request = kit.contentstack_webhook("/webhooks/contentstack", &publish("blt-only", n));
        assert_eq!(send(&base, request).await.0, 200);
    }
    let handled = Arc::new(Mutex::new(0));
    let count = Arc::clone(&handled);
    let _workers = inbox.work(8, move |_: InboxDelivery| {
        *count.lock().unwrap() += 1;
        std::future::ready(Ok::<(), BoxError>(()))
    });
    until(|| *handled.lock().unwrap() == 30).await;
}
