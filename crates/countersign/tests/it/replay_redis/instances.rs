//! Two instances on one Redis

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_handled_by_a_and_replayed_to_b_is_acknowledged_not_handled() {
    let redis = RedisServer::start().await;
    let (handled, failures) = counters();
    let a = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures.clone(),
        Duration::ZERO,
    )
    .await;
    let b = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures.clone(),
        Duration::ZERO,
    )
    .await;
    let delivery = delivery();
    assert_eq!(send(&a, &delivery).await.status(), 200);
    let replay = send(&b, &delivery).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["x-countersign-replay"], "duplicate");
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_on_both_instances_are_handled_exactly_once() {
    let redis = RedisServer::start().await;
    let (handled, failures) = counters();
    let delay = Duration::from_millis(300);
    let a = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures.clone(),
        delay,
    )
    .await;
    let b = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures.clone(),
        delay,
    )
    .await;
    let delivery = Arc::new(delivery());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let url = if i % 2 == 0 { a.clone() } else { b.clone() };
            let delivery = delivery.clone();
            tokio::spawn(async move { send(&url, &delivery).await.status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(handled.load(Ordering::SeqCst), 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_handler_failure_followed_by_the_retry_is_handled_once() {
    let redis = RedisServer::start().await;
    let (handled, failures) = counters();
    failures.store(1, Ordering::SeqCst);
    let a = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures.clone(),
        Duration::ZERO,
    )
    .await;
    let b = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures.clone(),
        Duration::ZERO,
    )
    .await;
    let delivery = delivery();
    assert_eq!(send(&a, &delivery).await.status(), 500);
    // The sender retries; another instance takes it.
    assert_eq!(send(&b, &delivery).await.status(), 200);
    assert_eq!(
        send(&a, &delivery).await.headers()["x-countersign-replay"],
        "duplicate"
    );
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_fails_closed_then_recovers_when_it_is_back() {
    let mut redis = RedisServer::start().await;
    let (handled, failures) = counters();
    let url = instance(
        RedisStore::new(&redis.url()).unwrap(),
        handled.clone(),
        failures,
        Duration::ZERO,
    )
    .await;
    assert_eq!(send(&url, &delivery()).await.status(), 200);

    redis.stop();
    let (status, p) = problem(send(&url, &delivery()).await).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (503, Some("replay_store_unavailable"))
    );
    assert_eq!(
        handled.load(Ordering::SeqCst),
        1,
        "nothing is handled unprotected"
    );

    redis.restart().await;
    let mut recovered = false;
    for _ in 0..50 {
        if send(&url, &delivery()).await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the connection manager reconnected");
}

#[tokio::test]
async fn fail_open_passes_requests_on_while_redis_is_down() {
    let mut redis = RedisServer::start().await;
    let store = RedisStore::new(&redis.url())
        .unwrap()
        .with_unavailable_policy(UnavailablePolicy::FailOpen);
    let (handled, failures) = counters();
    let url = instance(store, handled.clone(), failures, Duration::ZERO).await;
    redis.stop();
    assert_eq!(send(&url, &delivery()).await.status(), 200);
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn claims_are_leases_and_only_the_owner_renews_or_settles_one() {
    let redis = RedisServer::start().await;
    let store = RedisStore::new(&redis.url()).unwrap().with_prefix("test:");
    let key = ReplayKey::from_bytes([7u8; 32]);
    let (mine, theirs) = (Owner::from_token("mine"), Owner::from_token("theirs"));
    let lease = Duration::from_millis(800);
    assert_eq!(
        store.claim(&key, &mine, lease).await.unwrap(),
        Claim::Claimed
    );
    assert_eq!(
        store.claim(&key, &mine, lease).await.unwrap(),
        Claim::Claimed,
        "a claim is idempotent for its owner"
    );
    assert_eq!(
        store.claim(&key, &theirs, lease).await.unwrap(),
        Claim::InFlight
    );
    assert!(!store.renew(&key, &theirs, lease).await.unwrap());
    store.release(&key, &theirs).await.unwrap();
    store.complete(&key, &theirs, lease).await.unwrap();
    assert_eq!(
        store.claim(&key, &theirs, lease).await.unwrap(),
        Claim::InFlight,
        "not theirs to renew or settle"
    );
    // Renewed, the lease outlives its first end; unrenewed, it lapses.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(store.renew(&key, &mine, lease).await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        store.claim(&key, &theirs, lease).await.unwrap(),
        Claim::InFlight
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        store.claim(&key, &theirs, lease).await.unwrap(),
        Claim::Claimed,
        "the lease lapsed"
    );
    assert!(
        !store.renew(&key, &mine, lease).await.unwrap(),
        "and mine is gone"
    );

    // Done entries live for their TTL.
    store.complete(&key, &theirs, lease).await.unwrap();
    assert_eq!(store.claim(&key, &mine, lease).await.unwrap(), Claim::Done);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        store.claim(&key, &mine, lease).await.unwrap(),
        Claim::Claimed,
        "expired with its TTL"
    );
}
