//! The replay guard with Redis, against a real `redis-server` this test starts on a free
//! loopback port: two app instances share it, it is stopped and restarted mid-test, a reply
//! is lost on the way, and an instance running as its own process is killed mid-handler.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

mod common;

use countersign::contentstack::steps::WebhookSteps as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use common::*;
use countersign::ContentstackWebhookLayer;
use countersign::contentstack::{StaticKeys, WebhookVerifier};
use countersign::replay::{
    Claim, Owner, RedisStore, ReplayGuardLayer, ReplayKey, ReplayStore, UnavailablePolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceBuilder;

/// A `redis-server` on a loopback port, stopped when dropped.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self { port, child: None };
        server.restart().await;
        server
    }

    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn ping(&self) -> bool {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        matches!(stream.read(&mut buf).await, Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An app instance: verification, then the replay guard on `store`; counts what it handled.
async fn instance(
    store: RedisStore,
    handled: Arc<AtomicUsize>,
    failures: Arc<AtomicUsize>,
    delay: Duration,
) -> String {
    let handler = post(move || {
        let (handled, failures) = (handled.clone(), failures.clone());
        async move {
            tokio::time::sleep(delay).await;
            // Fail while failures are left to inject.
            if failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
                .is_ok()
            {
                return (StatusCode::INTERNAL_SERVER_ERROR, "failed");
            }
            handled.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, "handled")
        }
    });
    let layers = ServiceBuilder::new()
        .layer(ContentstackWebhookLayer::new(
            WebhookVerifier::new(),
            StaticKeys::parse(PUBLIC_A).unwrap(),
        ))
        .layer(ReplayGuardLayer::new(store));
    format!(
        "http://{}/hook",
        serve(Router::new().route("/hook", handler.layer(layers))).await
    )
}

fn delivery() -> (String, String) {
    let body = webhook_body(Duration::from_secs(1), r#"{"entry":{"uid":"blt1"}}"#);
    let signature = rsa_signature(PRIVATE_A, &body);
    (body, signature)
}

async fn send(url: &str, (body, signature): &(String, String)) -> reqwest::Response {
    client()
        .post(url)
        .header("x-contentstack-request-signature", signature)
        .body(body.clone())
        .send()
        .await
        .unwrap()
}

fn counters() -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)))
}

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

/// One instance of the fleet as its own process (`examples/fleet_node.rs`), killed when dropped.
struct Node {
    child: Child,
    url: String,
    port: u16,
}

impl Node {
    async fn start(
        redis_url: &str,
        records: &std::path::Path,
        port: Option<u16>,
        env: &[(String, String)],
    ) -> Self {
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        // target/<profile>/deps/<this test> -> target/<profile>/examples/fleet_node
        let exe = std::env::current_exe().unwrap();
        let binary = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples/fleet_node");
        let key =
            std::env::temp_dir().join(format!("countersign-fleet-key-{}.pem", std::process::id()));
        std::fs::write(&key, PUBLIC_A).unwrap();
        let mut command = Command::new(&binary);
        command
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("REDIS_URL", redis_url)
            .env("PUBLIC_KEY", &key)
            .env("RECORD_FILE", records)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let node = Self {
            child: command.spawn().unwrap_or_else(|e| {
                panic!(
                    "{} is built by `cargo test` (an example): {e}",
                    binary.display()
                )
            }),
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the fleet node did not start");
    }

    /// SIGKILL: no destructor, no graceful shutdown, no release of its claims.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of the nodes' record file that say `what` (`start` or `done`).
fn recorded(records: &std::path::Path, what: &str) -> Vec<String> {
    std::fs::read_to_string(records)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with(&format!("{what} ")))
        .map(str::to_owned)
        .collect()
}

/// Signs `body` afresh, as Contentstack does for each attempt; `None` when nothing answered.
async fn attempt(url: &str, body: &str) -> Option<u16> {
    let signature = rsa_signature(PRIVATE_A, body);
    client()
        .post(url)
        .header("x-contentstack-request-signature", signature)
        .body(body.to_owned())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()
        .map(|response| response.status().as_u16())
}

fn records_file(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("countersign-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_handler_loses_nothing_and_the_retry_on_another_node_runs_once() {
    let redis = RedisServer::start().await;
    let records = records_file("sigkill");
    // A works slowly and is killed mid-handler; B works at once. The default lease (3 s).
    let slow = [("HANDLER_DELAY_MS".to_owned(), "20000".to_owned())];
    let mut a = Node::start(&redis.url(), &records, None, &slow).await;
    let b = Node::start(&redis.url(), &records, None, &[]).await;
    let body = webhook_body(Duration::from_secs(1), r#"{"entry":{"uid":"blt1"}}"#);

    let first = tokio::spawn({
        let (url, body) = (a.url.clone(), body.clone());
        async move { attempt(&url, &body).await }
    });
    for _ in 0..200 {
        if !recorded(&records, "start").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        recorded(&records, "start").len(),
        1,
        "A started the handler"
    );
    a.kill();
    assert_eq!(
        first.await.unwrap(),
        None,
        "Contentstack saw the connection die"
    );

    // A retry at once would find A's lease still live: refused as in flight, not lost.
    assert_eq!(attempt(&b.url, &body).await, Some(409));
    // Contentstack's first retry comes 5 s after the failure, signed afresh, to another node.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(attempt(&b.url, &body).await, Some(200));
    assert_eq!(
        recorded(&records, "done").len(),
        1,
        "handled exactly once, by B"
    );
    assert_eq!(recorded(&records, "start").len(), 2);
    // Later retries are acknowledged.
    assert_eq!(attempt(&b.url, &body).await, Some(200));
    assert_eq!(recorded(&records, "start").len(), 2, "and not run again");
}

/// A TCP proxy in front of Redis that loses one message and cuts the connection: once
/// `armed`, the next reply Redis sends (the command was applied, its answer is lost); once
/// `drop_request`, the next command a client sends (it never reaches Redis).
struct LossyProxy {
    port: u16,
    armed: Arc<std::sync::atomic::AtomicBool>,
    drop_request: Arc<std::sync::atomic::AtomicBool>,
}

impl LossyProxy {
    async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let drop_request = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (trigger, request_trigger) = (armed.clone(), drop_request.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let (trigger, request_trigger) = (trigger.clone(), request_trigger.clone());
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = tokio::spawn(async move {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if request_trigger.swap(false, Ordering::SeqCst) {
                                break; // the command is dropped, and the connection with it
                            }
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if trigger.swap(false, Ordering::SeqCst) {
                            break; // the reply is dropped, and the connection with it
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    upstream.abort();
                });
            }
        });
        Self {
            port,
            armed,
            drop_request,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_is_lost_is_asked_again_and_the_delivery_runs_once() {
    let redis = RedisServer::start().await;
    let proxy = LossyProxy::start(redis.port).await;
    let (handled, failures) = counters();
    let url = instance(
        RedisStore::new(&proxy.url()).unwrap(),
        handled.clone(),
        failures,
        Duration::ZERO,
    )
    .await;
    // Warm up: the connection is up and the scripts are loaded.
    assert_eq!(send(&url, &delivery()).await.status(), 200);

    let delivery = delivery();
    proxy.armed.store(true, Ordering::SeqCst);
    let first = send(&url, &delivery).await;
    assert_eq!(
        first.status(),
        200,
        "the claim was applied, its answer lost; asked again, the store says it is ours"
    );
    assert!(
        !proxy.armed.load(Ordering::SeqCst),
        "a reply was really dropped"
    );
    assert_eq!(handled.load(Ordering::SeqCst), 2);
    let replay = send(&url, &delivery).await;
    assert_eq!(replay.headers()["x-countersign-replay"], "duplicate");
    assert_eq!(handled.load(Ordering::SeqCst), 2);
}

/// The fleet under kills, for the figures of a longer run (`scripts/fleet`): deliveries sent as
/// Contentstack would (re-signed each attempt, retried on its schedule, scaled in time, each
/// attempt to the next node in turn) to two nodes, while one node after the other is killed
/// with SIGKILL and started again.
///
/// `FLEET_DELIVERIES` (default 40), `FLEET_SCALE` (the schedule's time scale, default 0.1),
/// `FLEET_KILL_EVERY_MS` (default 1500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a longer fault run: scripts/fleet"]
async fn fleet_under_kills() {
    let setting =
        |name: &str, default: f64| std::env::var(name).map_or(default, |v| v.parse().unwrap());
    let deliveries = setting("FLEET_DELIVERIES", 40.0) as usize;
    let scale = setting("FLEET_SCALE", 0.1);
    let kill_every = Duration::from_millis(setting("FLEET_KILL_EVERY_MS", 1500.0) as u64);
    // The lease stays below the first (scaled) retry interval.
    let lease = ((5_000.0 * scale) * 0.6) as u64;
    let env = vec![("LEASE_MS".to_owned(), lease.to_string())];
    let redis = RedisServer::start().await;
    let records = records_file("fleet");
    let mut first = Vec::new();
    for _ in 0..2 {
        first.push(Node::start(&redis.url(), &records, None, &env).await);
    }
    let urls: Vec<String> = first.iter().map(|node| node.url.clone()).collect();
    let nodes = Arc::new(tokio::sync::Mutex::new(first));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = tokio::spawn({
        let (nodes, stop, records, url) =
            (nodes.clone(), stop.clone(), records.clone(), redis.url());
        async move {
            let mut kills = 0usize;
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(kill_every).await;
                let mut nodes = nodes.lock().await;
                let node = &mut nodes[kills % 2];
                node.kill();
                kills += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                *node = Node::start(&url, &records, Some(node.port), &env).await;
            }
            kills
        }
    });

    let keys = countersign::contentstack::KeySet::parse(PUBLIC_A).unwrap();
    let retries = countersign::contentstack::RETRY_SCHEDULE.map(|d| d.as_secs());
    let schedule = [0, retries[0], retries[1], retries[2], retries[3]];
    let mut tasks = Vec::new();
    for n in 0..deliveries {
        let (urls, keys) = (urls.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(n as u64 * 40)).await;
            let data = format!(r#"{{"n":{n},"delay_ms":{}}}"#, 50 + (n * 37) % 250);
            let body = webhook_body(Duration::ZERO, &data);
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "x-contentstack-request-signature",
                rsa_signature(PRIVATE_A, &body).parse().unwrap(),
            );
            let id = WebhookVerifier::new()
                .verify_with_keys(
                    &headers,
                    body.as_bytes(),
                    Some(&keys),
                    std::time::SystemTime::now(),
                )
                .unwrap()
                .delivery_id();
            let mut answers = Vec::new();
            for (turn, pause) in schedule.iter().enumerate() {
                tokio::time::sleep(Duration::from_secs_f64(*pause as f64 * scale)).await;
                let answer = attempt(&urls[(n + turn) % urls.len()], &body).await;
                answers.push(answer);
                if answer.is_some_and(|status| (200..300).contains(&status)) {
                    return (id, answers, true);
                }
            }
            (id, answers, false)
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let kills = killer.await.unwrap();

    // Each line is `start|done <delivery id> <pid>`, in the order the nodes wrote them.
    let lines: Vec<Vec<String>> = std::fs::read_to_string(&records)
        .unwrap_or_default()
        .lines()
        .map(|line| line.split(' ').map(str::to_owned).collect())
        .collect();
    let done_at = |id: &str| -> Vec<usize> {
        (0..lines.len())
            .filter(|&i| lines[i][0] == "done" && lines[i][1] == id)
            .collect()
    };
    // A handler that ran to completion again is explained only by its first node dying between
    // the handler's commit and the "done" mark: that node wrote nothing after it.
    let killed_after_commit =
        |at: usize| lines[at + 1..].iter().all(|line| line[2] != lines[at][2]);
    let attempts: usize = outcomes.iter().map(|(_, answers, _)| answers.len()).sum();
    let (mut once, mut rerun, mut unexplained, mut lost, mut exhausted) = (0, 0, 0, 0, Vec::new());
    for (id, answers, acknowledged) in &outcomes {
        let done = done_at(id);
        match (done.len(), acknowledged) {
            (1, _) => once += 1,
            (0, true) => lost += 1,
            (0, false) => exhausted.push(answers),
            _ if done[..done.len() - 1]
                .iter()
                .all(|&at| killed_after_commit(at)) =>
            {
                rerun += 1
            }
            _ => unexplained += 1,
        }
    }
    println!(
        "fleet: {deliveries} deliveries, {attempts} attempts, {kills} SIGKILLs; {} recorded once by \
         delivery id, {once} handled once, {rerun} handled again after a kill between the handler's \
         commit and the done mark, {unexplained} handled twice otherwise, {lost} lost, {} exhausted",
        once + rerun,
        exhausted.len()
    );
    for answers in &exhausted {
        println!("  exhausted, answers: {answers:?}");
    }
    assert_eq!((lost, unexplained), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_mark_that_fails_after_a_2xx_is_retried_and_never_blocks_the_delivery() {
    let redis = RedisServer::start().await;
    let proxy = Arc::new(LossyProxy::start(redis.port).await);
    let handled = Arc::new(AtomicUsize::new(0));
    let (counter, trigger) = (handled.clone(), proxy.clone());
    // The handler succeeds, and the command after it (the "done" mark) is lost on the way.
    let handler = post(move || {
        let (counter, trigger) = (counter.clone(), trigger.clone());
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            trigger.drop_request.store(true, Ordering::SeqCst);
            "handled"
        }
    });
    // A lease far longer than the test: only the retried mark can settle the delivery.
    let layers = ServiceBuilder::new()
        .layer(ContentstackWebhookLayer::new(
            WebhookVerifier::new(),
            StaticKeys::parse(PUBLIC_A).unwrap(),
        ))
        .layer(
            ReplayGuardLayer::new(RedisStore::new(&proxy.url()).unwrap())
                .with_lease(Duration::from_secs(60)),
        );
    let url = format!(
        "http://{}/hook",
        serve(Router::new().route("/hook", handler.layer(layers))).await
    );
    let delivery = delivery();
    assert_eq!(
        send(&url, &delivery).await.status(),
        200,
        "the handler's answer stands"
    );
    assert!(
        !proxy.drop_request.load(Ordering::SeqCst),
        "the mark was really lost"
    );

    // Within a second or two the background retry marks it done: a replay is a duplicate, not
    // a 409 for the lease (or the window) and not handled again.
    let mut answers = Vec::new();
    for _ in 0..40 {
        let replay = send(&url, &delivery).await;
        let duplicate = replay.headers().get("x-countersign-replay").is_some();
        answers.push(replay.status().as_u16());
        if duplicate {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answers.last(), Some(&200), "{answers:?}");
    assert!(answers.len() < 40, "marked done by the retry: {answers:?}");
    assert_eq!(handled.load(Ordering::SeqCst), 1, "{answers:?}");
}

#[tokio::test]
async fn app_tokens_are_spent_once_across_a_fleet_and_refused_while_redis_is_down() {
    use countersign::contentstack::{AppTokenVerifier, SigningKey, mint_app_token};
    use countersign::session::{AppTokenLayer, SessionKey, Sessions};
    let mut redis = RedisServer::start().await;
    let instance = || async {
        let sessions = Sessions::new([SessionKey::new([3u8; 32]).unwrap()]);
        let layer = AppTokenLayer::new(
            AppTokenVerifier::new(),
            StaticKeys::parse(PUBLIC_A).unwrap(),
            sessions,
        )
        .with_single_use(RedisStore::new(&redis.url()).unwrap());
        let app = Router::new().route("/ui", axum::routing::get(|| async { "page" }).layer(layer));
        format!("http://{}", serve(app).await)
    };
    let (a, b) = (instance().await, instance().await);
    let token = |jti: &str| {
        let claims = serde_json::json!({
            "app_uid": "app1", "installation_uid": "i", "organization_uid": "o",
            "user_uid": "u", "stack_api_key": "bltA", "jti": jti,
        });
        let key = SigningKey::from_pem(PRIVATE_A).unwrap();
        mint_app_token(
            &key,
            &claims,
            std::time::SystemTime::now(),
            Duration::from_secs(300),
        )
        .unwrap()
    };
    let load =
        |base: &str, token: &str| client().get(format!("{base}/ui?app-token={token}")).send();

    let first = token("first");
    assert_eq!(load(&a, &first).await.unwrap().status(), 200);
    // The other instance knows it is spent.
    let (status, p) = problem(load(&b, &first).await.unwrap()).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (401, Some("app_token_reused"))
    );

    redis.stop();
    let response = load(&b, &token("second")).await.unwrap();
    assert!(response.headers().contains_key("retry-after"));
    let (status, p) = problem(response).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (503, Some("store_unavailable"))
    );
}
