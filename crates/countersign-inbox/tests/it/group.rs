//! Group commit on SQLite: the commits that arrive while the database is busy share one
//! transaction, and each is answered as it would have been alone; no timer delays one alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use countersign_inbox::{Commit, InboxDelivery, Provider, SqliteInbox, WorkerStore, rusqlite};

use crate::inbox::sqlite;

fn delivery(id: &str, tenant: &str) -> InboxDelivery {
    InboxDelivery {
        id: id.to_owned(),
        provider: Provider::Contentstack,
        tenant: Some(tenant.to_owned()),
        body: bytes::Bytes::from_static(b"{}"),
        signed_headers: Vec::new(),
        received_at: SystemTime::now(),
        attempt: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_that_wait_for_the_database_share_one_transaction_each_answered_as_alone() {
    let connection = rusqlite::Connection::open(sqlite("group")).unwrap();
    connection
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .unwrap();
    let transactions = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&transactions);
    connection.commit_hook(Some(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        false
    }));
    let connection = Arc::new(Mutex::new(connection));
    let store = SqliteInbox::sharing(Arc::clone(&connection)).unwrap();
    // A member the database itself refuses.
    connection
        .lock()
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON countersign_inbox WHEN NEW.id = 'refused'
             BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END;",
        )
        .unwrap();
    let before = transactions.load(Ordering::SeqCst);

    // The database busy (a thread holds the connection): every commit made meanwhile waits
    // for the next group.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let busy = Arc::clone(&connection);
    let holder = std::thread::spawn(move || {
        let _held = busy.lock().unwrap();
        held_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    held_rx.recv().unwrap();
    let far = SystemTime::now() + Duration::from_secs(3600);
    // The first commit's group is taken at once, and waits for the database: every commit
    // made meanwhile waits for the next group.
    let first = tokio::spawn({
        let store = store.clone();
        async move { store.commit(&delivery("first", "blt-c"), far, None).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut members: Vec<(InboxDelivery, Option<u64>)> = (0..20)
        .map(|i| (delivery(&format!("d{i}"), "blt-a"), None))
        .collect();
    members.push((delivery("d3", "blt-a"), None)); // the same delivery twice in one group
    members.push((delivery("refused", "blt-a"), None));
    members.extend((0..3).map(|i| (delivery(&format!("b{i}"), "blt-b"), Some(2))));
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
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    let mut answers = Vec::new();
    for commit in commits {
        answers.push(commit.await.unwrap());
    }

    assert_eq!(first.await.unwrap().unwrap(), Commit::New);
    assert_eq!(
        transactions.load(Ordering::SeqCst) - before,
        2,
        "the first commit's group, then the 25 commits made while it waited in one"
    );
    let of = |id: &str| -> Vec<_> {
        answers
            .iter()
            .filter(|(of, _)| of == id)
            .map(|(_, answer)| answer.as_ref().ok().copied())
            .collect()
    };
    for i in (0..20).filter(|i| *i != 3) {
        assert_eq!(of(&format!("d{i}")), [Some(Commit::New)]);
    }
    let mut twice = of("d3");
    twice.sort_by_key(|answer| format!("{answer:?}"));
    assert_eq!(twice, [Some(Commit::Duplicate), Some(Commit::New)]);
    assert_eq!(of("refused"), [None], "its own failure, not the group's");
    let mut limited: Vec<_> = (0..3).flat_map(|i| of(&format!("b{i}"))).collect();
    limited.sort_by_key(|answer| format!("{answer:?}"));
    assert_eq!(
        limited,
        [
            Some(Commit::New),
            Some(Commit::New),
            Some(Commit::TenantFull)
        ],
        "a tenant's limit counts the group's earlier rows"
    );
    let rows: i64 = connection
        .lock()
        .unwrap()
        .query_row("SELECT count(*) FROM countersign_inbox", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(rows, 23);

    // Alone on an idle inbox, a commit is its own transaction, at once.
    let alone = store.commit(&delivery("alone", "blt-c"), far, None).await;
    assert_eq!(alone.unwrap(), Commit::New);
    assert_eq!(transactions.load(Ordering::SeqCst) - before, 3);
}

#[tokio::test]
async fn bookkeeping_does_not_wait_for_the_disk_and_leaves_every_commit_durable() {
    use countersign_inbox::ClaimRequest;

    let connection = rusqlite::Connection::open(sqlite("bookkeeping")).unwrap();
    connection
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .unwrap();
    let connection = Arc::new(Mutex::new(connection));
    let store = SqliteInbox::sharing(Arc::clone(&connection)).unwrap();
    let level = || -> i64 {
        connection
            .lock()
            .unwrap()
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap()
    };
    let far = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(
        store
            .commit(&delivery("d1", "blt-a"), far, None)
            .await
            .unwrap(),
        Commit::New
    );
    let now = SystemTime::now();
    let claimed = store
        .claim(ClaimRequest {
            owner: "w",
            now,
            lease_until: far,
            limit: 8,
            tenant_concurrency: 2,
            max_attempts: 8,
            dead_until: far,
            rotation: 0,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(store.complete("d1", "w:1").await.unwrap());
    // FULL (2) again after the bookkeeping, which ran at NORMAL (1).
    assert_eq!(level(), 2);

    // Left at NORMAL by anything else, a commit is still written at FULL.
    connection
        .lock()
        .unwrap()
        .execute_batch("PRAGMA synchronous = NORMAL")
        .unwrap();
    assert_eq!(
        store
            .commit(&delivery("d2", "blt-a"), far, None)
            .await
            .unwrap(),
        Commit::New
    );
    assert_eq!(level(), 2);
}

#[tokio::test]
async fn outcomes_and_renewals_of_many_deliveries_go_in_one_transaction_each_by_its_lease() {
    use countersign_inbox::{ClaimRequest, Held, Outcome};

    let connection = rusqlite::Connection::open(sqlite("outcomes")).unwrap();
    let transactions = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&transactions);
    connection.commit_hook(Some(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        false
    }));
    let store = SqliteInbox::sharing(Arc::new(Mutex::new(connection))).unwrap();
    let now = SystemTime::now();
    let far = now + Duration::from_secs(3600);
    for n in 0..4 {
        let delivery = delivery(&format!("d{n}"), "blt-a");
        store.commit(&delivery, far, None).await.unwrap();
    }
    let now = SystemTime::now();
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
    let before = transactions.load(Ordering::SeqCst);
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
    assert_eq!(
        transactions.load(Ordering::SeqCst) - before,
        2,
        "three renewals in one transaction, five outcomes in another"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.pending, stats.leased, stats.dead), (1, 0, 1));
}
