//! How long one claim takes as the backlog grows: 1k, 10k, 100k and 300k deliveries due over
//! 30 tenants, in SQLite and (with `BENCH_DATABASE_URL`) PostgreSQL. Each claim takes up to 8
//! (a worker pool's batch); the rows it leased are made due again, untimed, before the next.
//! Prints one line per database and size: the median and p90 of 40 claims, in milliseconds.
//!
//! Then, over HTTP: 30 stacks hold 10,000 due deliveries each, which 8 workers handle (10 ms
//! each), and a 31st stack sends its first delivery through the verification layer: how long
//! until its handler runs.
//!
//! `claim [sizes...]` (default `1000 10000 100000 300000`); `scripts/bench-claim` runs it with
//! a throwaway PostgreSQL.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant, SystemTime};

use countersign::ContentstackWebhookLayer;
use countersign::contentstack::{HmacSecret, StaticKeys, WebhookVerifier};
use countersign_inbox::{
    ClaimRequest, Inbox, InboxDelivery, InboxStore, PostgresInbox, SqliteInbox, WorkerStore,
};

const PUBLIC: &str =
    include_str!("../../../crates/countersign-core/tests/data/keys/contentstack-a.public.pem");
/// The backlog of the first-delivery run: 30 stacks, 10,000 each.
const BACKLOG: u64 = 300_000;

const TENANTS: u64 = 30;
const CLAIMS: usize = 40;

/// Rows `0..n`, tenant `i % 30`, all due.
const SEED: &str = "INSERT INTO {table} (id, provider, tenant, body, signed_headers, state,
    due_at, received_at, expires_at)
  SELECT 'd' || n, 'contentstack', 'blt' || (n % 30), {body}, '[]', 'pending', n, n, 9000000000000
    FROM {series}";
/// What a claim leased, due again.
const RESET: &str =
    "UPDATE {table} SET state = 'pending', lease_owner = NULL, attempts = 0 WHERE state = 'leased'";

fn request(owner: &str) -> ClaimRequest<'_> {
    let now = SystemTime::now();
    ClaimRequest {
        owner,
        now,
        lease_until: now + Duration::from_secs(30),
        limit: 8,
        tenant_concurrency: 2,
        max_attempts: 8,
        dead_until: now + Duration::from_secs(3600),
        rotation: 0,
    }
}

/// The median and p90 of `times`, in milliseconds.
fn summary(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(times[times.len() / 2]), ms(times[times.len() * 9 / 10]))
}

async fn time_claims<F, Fut>(store: &impl WorkerStore, reset: F) -> Vec<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::new();
    for n in 0..CLAIMS + 3 {
        let owner = format!("bench.{n}");
        let started = Instant::now();
        let claimed = store.claim(request(&owner)).await.unwrap();
        let took = started.elapsed();
        assert_eq!(
            claimed.len(),
            8,
            "a claim takes 8 of the 30 tenants' oldest"
        );
        // The first few warm the caches.
        if n >= 3 {
            times.push(took);
        }
        reset().await;
    }
    times
}

/// A SQLite inbox with `n` due deliveries over 30 tenants, and a connection of its own.
fn seeded_sqlite(n: u64) -> (SqliteInbox, countersign_inbox::rusqlite::Connection) {
    let dir = std::env::temp_dir().join(format!("countersign-claim-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join(format!("inbox-{n}.sqlite3"));
    let store = SqliteInbox::open(&path).unwrap();
    let db = rusqlite_connection(&path);
    db.execute_batch(
        &SEED
            .replace("{table}", "countersign_inbox")
            .replace("{body}", "x'7b7d'")
            .replace(
                "{series}",
                &format!(
                    "(WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < {n}) SELECT n FROM s)"
                ),
            ),
    )
    .unwrap();
    db.execute_batch("ANALYZE").unwrap();
    (store, db)
}

async fn sqlite(n: u64) -> (f64, f64) {
    let (store, db) = seeded_sqlite(n);
    let reset = RESET.replace("{table}", "countersign_inbox");
    let times = time_claims(&store, || {
        db.execute_batch(&reset).unwrap();
        std::future::ready(())
    })
    .await;
    summary(times)
}

fn rusqlite_connection(path: &std::path::Path) -> countersign_inbox::rusqlite::Connection {
    countersign_inbox::rusqlite::Connection::open(path).unwrap()
}

/// A PostgreSQL inbox in a table of its own with `n` due deliveries over 30 tenants.
async fn seeded_postgres(url: &str, n: u64) -> (PostgresInbox, deadpool_postgres::Object, String) {
    let manager = deadpool_postgres::Manager::from_config(
        url.parse().unwrap(),
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .build()
        .unwrap();
    let table = format!("claim_bench_{n}");
    let store = PostgresInbox::new(pool.clone()).with_table(&table).unwrap();
    let client = pool.get().await.unwrap();
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await
        .unwrap();
    // Made with the store's first operation.
    store.stats().await.unwrap();
    client
        .batch_execute(
            &SEED
                .replace("{table}", &table)
                .replace("{body}", "'\\x7b7d'::bytea")
                .replace("{series}", &format!("generate_series(0, {n} - 1) AS n")),
        )
        .await
        .unwrap();
    client
        .batch_execute(&format!("VACUUM ANALYZE {table}"))
        .await
        .unwrap();
    (store, client, table)
}

async fn postgres(url: &str, n: u64) -> (f64, f64) {
    let (store, client, table) = seeded_postgres(url, n).await;
    let reset = RESET.replace("{table}", &table);
    let (connection, reset) = (&client, reset.as_str());
    let times = time_claims(&store, move || async move {
        connection.batch_execute(reset).await.unwrap();
    })
    .await;
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    summary(times)
}

/// How long a newcomer stack's first delivery waits for its handler while 30 stacks hold
/// [`BACKLOG`] due deliveries, sent over HTTP through the verification layer.
async fn first_delivery<St: InboxStore>(store: St) -> Duration {
    let secret = HmacSecret::new("bench-secret").unwrap();
    let inbox = Inbox::new(store).with_poll_interval(Duration::from_millis(50));
    let (seen, mut newcomer) = tokio::sync::mpsc::unbounded_channel();
    let _workers = inbox.work(8, move |delivery: InboxDelivery| {
        let seen = seen.clone();
        async move {
            if delivery.tenant.as_deref() == Some("blt-newcomer") {
                let _ = seen.send(Instant::now());
            } else {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(())
        }
    });
    let app = axum::Router::new().route(
        "/webhooks",
        axum::routing::post_service(inbox.acknowledge()).layer(ContentstackWebhookLayer::new(
            WebhookVerifier::hmac_only(secret.clone()),
            StaticKeys::parse(PUBLIC).unwrap(),
        )),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // The backlog is being worked on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = SystemTime::now();
    let triggered_at = time::OffsetDateTime::from(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = serde_json::json!({
        "triggered_at": triggered_at, "module": "entry", "event": "publish",
        "api_key": "blt-newcomer", "data": {"entry": {"uid": "first"}}
    })
    .to_string();
    let sent = Instant::now();
    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/webhooks"))
        .header(
            "x-contentstack-hmac-signature",
            secret.sign(body.as_bytes(), now),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let handled = tokio::time::timeout(Duration::from_secs(60), newcomer.recv())
        .await
        .expect("the newcomer's delivery was handled within 60 s")
        .unwrap();
    handled - sent
}

#[tokio::main]
async fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .map(|size| size.parse().unwrap())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 100_000, 300_000]
    } else {
        sizes
    };
    println!("database due_rows tenants claim_p50_ms claim_p90_ms");
    for &n in &sizes {
        let (p50, p90) = sqlite(n).await;
        println!("sqlite {n} {TENANTS} {p50:.3} {p90:.3}");
    }
    if let Ok(url) = std::env::var("BENCH_DATABASE_URL") {
        for &n in &sizes {
            let (p50, p90) = postgres(&url, n).await;
            println!("postgres {n} {TENANTS} {p50:.3} {p90:.3}");
        }
    }
    println!("database backlog tenants newcomer_first_delivery_handled_ms");
    let (store, _db) = seeded_sqlite(BACKLOG);
    let waited = first_delivery(store).await;
    println!(
        "sqlite {BACKLOG} {TENANTS} {:.1}",
        waited.as_secs_f64() * 1000.0
    );
    if let Ok(url) = std::env::var("BENCH_DATABASE_URL") {
        let (store, _client, _table) = seeded_postgres(&url, BACKLOG).await;
        let waited = first_delivery(store).await;
        println!(
            "postgres {BACKLOG} {TENANTS} {:.1}",
            waited.as_secs_f64() * 1000.0
        );
    }
}
