//! A fleet under faults: three instances of each example backend share one real Redis and one
//! real PostgreSQL while the delivery simulator plays Contentstack (RSA and HMAC, retries
//! re-signed or resent byte for byte) and Contentful (idempotency keys) against them, round
//! robin. Meanwhile instances are killed with SIGKILL and restarted, Redis is restarted and
//! once flushed, PostgreSQL is restarted, and one instance is paused with SIGSTOP past the
//! provider's timeout and resumed. At the end the simulator reads back, through the examples'
//! own APIs, what each stack and space recorded: every delivery that was not given up must be
//! there exactly once.
//!
//! Each webhook is answered once committed to the example's durable inbox in PostgreSQL (or,
//! while PostgreSQL is down, to the instance's spool), and recorded from there. The test
//! reports, per kind of fault, the longest run of failed attempts each provider saw and the
//! acknowledgement latency, and fails when a fault other than a killed instance makes either
//! provider see more than 3 failed attempts in a row.
//!
//! CI runs it small (`CHAOS_DELIVERIES` 300 over `CHAOS_SECONDS` 20, the schedule at
//! `CHAOS_SCALE` 0.02, a fault every `CHAOS_FAULT_GAP` 1 s, PostgreSQL and Redis down for
//! `CHAOS_OUTAGE` 2 s; `CHAOS_REDIS=0` runs without Redis); `scripts/chaos` runs it at full
//! scale for `RELIABILITY.md`.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_core::contentful::SigningSecret;
use countersign_core::contentstack::{HmacSecret, SigningKey};
use countersign_tests::simulator::{
    Attempt, Credentials, Fleet, Load, Report, Schedule, Simulator, latency_percentile,
    longest_failure_run, run,
};
use countersign_tests::{Postgres, Redis};

const APP_UID: &str = "chaos-app";
const HMAC_SECRET: &str = "chaos-hmac-secret-0123456789abcdef";
const CONTENTFUL_SECRET: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const SESSION_SECRET: &str = "chaos-session-secret-0123456789abcdef";

/// One instance of an example backend, as its own process.
struct Instance {
    binary: &'static str,
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Instance {
    fn new(binary: &'static str, env: Vec<(String, String)>, dir: PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut env = env;
        env.push(("LISTEN_ADDR".into(), format!("127.0.0.1:{port}")));
        env.push(("DATA_DIR".into(), dir.display().to_string()));
        Self {
            binary,
            port,
            env,
            child: None,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it and waits until it answers `/healthz`.
    async fn start(&mut self) {
        // target/<profile>/deps/<test binary> -> target/<profile>/<binary>
        let exe = std::env::current_exe().unwrap();
        let path = exe.parent().unwrap().parent().unwrap().join(self.binary);
        let mut command = Command::new(&path);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        self.child = Some(command.spawn().unwrap_or_else(|e| {
            panic!(
                "{} is built by `cargo test --workspace`: {e}",
                path.display()
            )
        }));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        for _ in 0..200 {
            let health = client.get(format!("{}/healthz", self.base())).send().await;
            if health.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} did not start", self.binary);
    }

    /// SIGKILL: no graceful shutdown, no release of its claims, requests in flight cut.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGSTOP or SIGCONT.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused process does not die of SIGKILL until it is continued on some systems.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// A fault the chaos run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fault {
    /// SIGKILL one instance of each example, restarted at once.
    Kill,
    /// Redis killed and started again (empty).
    RedisRestart,
    /// Redis `FLUSHALL` (once, at the end of the first pause: the retries of what the paused
    /// instance holds were handled elsewhere, and their done marks are gone when it resumes).
    RedisFlush,
    /// Redis paused (SIGSTOP) past the provider's timeout, then resumed: handlers that
    /// committed wait on their done mark, the provider gives up on them and retries elsewhere,
    /// and the retry finds no done mark once the lease has run out.
    RedisPause,
    /// PostgreSQL stopped and started again.
    PostgresRestart,
    /// One marketplace instance paused past the provider's timeout, then resumed.
    Pause,
    /// No fault: the whole run, in the report.
    None,
}

/// The faults in the order they are injected, over and over until the deliveries are sent.
const CYCLE: [Fault; 6] = [
    Fault::Kill,
    Fault::PostgresRestart,
    Fault::Pause,
    Fault::RedisRestart,
    Fault::RedisPause,
    Fault::Kill,
];

fn setting(name: &str, default: f64) -> f64 {
    std::env::var(name).map_or(default, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_under_kills_restarts_and_pauses_records_every_delivery_exactly_once() {
    let deliveries = setting("CHAOS_DELIVERIES", 300.0) as usize;
    let window = Duration::from_secs_f64(setting("CHAOS_SECONDS", 20.0));
    let scale = setting("CHAOS_SCALE", 0.02);
    let schedule = Schedule::contentstack(scale, Duration::from_secs(2));
    // Past the timeout and the next retry or two, which go to other instances.
    let pause = schedule.timeout + Duration::from_secs(2);
    // How long PostgreSQL and Redis stay down (60 s at full scale).
    let outage = Duration::from_secs_f64(setting("CHAOS_OUTAGE", 2.0));
    // Without Redis, the fleet has only PostgreSQL (the webhooks need nothing else).
    let with_redis = setting("CHAOS_REDIS", 1.0) != 0.0;

    let pg = Arc::new(tokio::task::spawn_blocking(Postgres::start).await.unwrap());
    let mut redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let key = SigningKey::generate().unwrap();
    let run_dir = std::env::temp_dir().join(format!("countersign-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir).unwrap();
    let public = run_dir.join("contentstack-public.pem");
    std::fs::write(&public, key.public_key().to_pkcs1_pem()).unwrap();
    let redis_url = redis.url();
    let shared = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        [
            ("DATABASE_URL", pg.url().as_str()),
            ("REDIS_URL", redis_url.as_str()),
        ]
        .iter()
        .filter(|(name, _)| with_redis || *name != "REDIS_URL")
        .chain(pairs)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    };
    let marketplace_env = shared(&[
        ("CONTENTSTACK_PUBLIC_KEY", public.to_str().unwrap()),
        ("CONTENTSTACK_HMAC_SECRETS", HMAC_SECRET),
        ("CONTENTSTACK_APP_UID", APP_UID),
        ("SESSION_SECRET", SESSION_SECRET),
    ]);
    let contentful_env = shared(&[("CONTENTFUL_SIGNING_SECRETS", CONTENTFUL_SECRET)]);
    let mut marketplace: Vec<Instance> = (0..3)
        .map(|n| {
            Instance::new(
                "marketplace-app",
                marketplace_env.clone(),
                run_dir.join(format!("m{n}")),
            )
        })
        .collect();
    let mut contentful: Vec<Instance> = (0..3)
        .map(|n| {
            Instance::new(
                "contentful-app",
                contentful_env.clone(),
                run_dir.join(format!("c{n}")),
            )
        })
        .collect();
    for instance in marketplace.iter_mut().chain(contentful.iter_mut()) {
        instance.start().await;
    }

    let fleet = Fleet {
        contentstack: marketplace.iter().map(Instance::base).collect(),
        contentful: contentful.iter().map(Instance::base).collect(),
    };
    let credentials = Credentials {
        contentstack_key: key,
        contentstack_hmac: HmacSecret::new(HMAC_SECRET).unwrap(),
        contentful: SigningSecret::new(CONTENTFUL_SECRET).unwrap(),
        app_uid: APP_UID.into(),
    };
    // One acknowledgement in 25 is lost on the way: those deliveries come again, handled.
    let simulator =
        Arc::new(Simulator::new(fleet, credentials, schedule.clone()).losing_answers(25));
    let load = Load {
        deliveries,
        window,
        stacks: vec!["bltchaos0".into(), "bltchaos1".into(), "bltchaos2".into()],
        spaces: vec!["chaosspace0".into(), "chaosspace1".into()],
        run: "chaos".into(),
    };
    let started = Instant::now();
    let traffic = tokio::spawn({
        let (simulator, load) = (simulator.clone(), load.clone());
        async move { run(&simulator, &load).await }
    });

    // The faults, one after the other with a gap between, while the deliveries flow: the whole
    // cycle at least once, and on until the last delivery is sent.
    let gap = Duration::from_secs_f64(setting("CHAOS_FAULT_GAP", 1.0));
    let mut injected: Vec<Fault> = Vec::new();
    // When each fault began and ended.
    let mut windows: Vec<(Fault, Instant, Instant)> = Vec::new();
    let mut flushed = false;
    let mut n = 0;
    while n < CYCLE.len() || started.elapsed() < window {
        tokio::time::sleep(gap).await;
        let fault = CYCLE[n % CYCLE.len()];
        if !with_redis && matches!(fault, Fault::RedisRestart | Fault::RedisPause) {
            n += 1;
            continue;
        }
        let began = Instant::now();
        match fault {
            Fault::Kill => {
                let (m, c) = (&mut marketplace[n % 3], &mut contentful[(n + 1) % 3]);
                m.kill();
                c.kill();
                tokio::time::sleep(Duration::from_millis(200)).await;
                m.start().await;
                c.start().await;
            }
            Fault::RedisRestart => {
                redis.stop();
                tokio::time::sleep(outage).await;
                redis = tokio::task::spawn_blocking(move || {
                    redis.resume();
                    redis
                })
                .await
                .unwrap();
            }
            Fault::RedisPause => {
                redis.signal("-STOP");
                tokio::time::sleep(pause).await;
                redis.signal("-CONT");
            }
            Fault::RedisFlush | Fault::None => redis.flush(),
            Fault::PostgresRestart => {
                let stopped = pg.clone();
                tokio::task::spawn_blocking(move || stopped.stop())
                    .await
                    .unwrap();
                tokio::time::sleep(outage).await;
                let started = pg.clone();
                tokio::task::spawn_blocking(move || started.resume())
                    .await
                    .unwrap();
            }
            Fault::Pause => {
                let paused = &marketplace[(n + 2) % 3];
                paused.signal("-STOP");
                if flushed || !with_redis {
                    tokio::time::sleep(pause).await;
                } else {
                    tokio::time::sleep(pause - Duration::from_millis(200)).await;
                    redis.flush();
                    injected.push(Fault::RedisFlush);
                    flushed = true;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                paused.signal("-CONT");
            }
        }
        injected.push(fault);
        windows.push((fault, began, Instant::now()));
        n += 1;
    }
    let outcomes = traffic.await.unwrap().unwrap();
    // Deliveries are handled off the request path: read back until every acknowledged one
    // is recorded (a delivery whose worker was killed waits for its lease to lapse, one whose
    // attempt failed for its backoff), for at most 120 s.
    let sent = Instant::now();
    let report = loop {
        let recorded = simulator.read_back(&load.tenants()).await.unwrap();
        let report = Report::new(&outcomes, &recorded, simulator.longest_failure_run());
        if !report.lost.is_empty() && sent.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        break report;
    };
    let settled = sent.elapsed();
    if !report.is_clean() {
        // What the shared inbox and each instance's spool still hold.
        println!(
            "the inbox's unhandled deliveries:\n{}",
            pg.query(
                "SELECT id, provider, tenant, state, attempts, lease_owner, last_error \
                 FROM marketplace_app_inbox WHERE state <> 'done' UNION ALL \
                 SELECT id, provider, tenant, state, attempts, lease_owner, last_error \
                 FROM contentful_app_inbox WHERE state <> 'done'"
            )
        );
        println!(
            "inbox rows by provider and state:\n{}events by stack:\n{}contentful records by space:\n{}deliveries rows: {}",
            pg.query(
                "SELECT provider, state, count(*) FROM marketplace_app_inbox GROUP BY 1, 2 \
                 UNION ALL SELECT provider, state, count(*) FROM contentful_app_inbox GROUP BY 1, 2"
            ),
            pg.query("SELECT api_key, count(*) FROM events GROUP BY 1"),
            pg.query(
                "SELECT space_id, environment_id, count(*) FROM contentful_deliveries GROUP BY 1, 2"
            ),
            pg.query("SELECT count(*) FROM deliveries"),
        );
        for instance in marketplace.iter().chain(&contentful) {
            let spool = std::path::Path::new(
                &instance
                    .env
                    .iter()
                    .find(|(k, _)| k == "DATA_DIR")
                    .unwrap()
                    .1,
            )
            .join("spool");
            let waiting = std::fs::read_dir(&spool).map_or(0, Iterator::count);
            println!("{} spool: {waiting} files", spool.display());
        }
    }
    let attempts = simulator.attempts();
    let faults = per_fault(&attempts, &windows, schedule.timeout);

    let count = |fault: Fault| injected.iter().filter(|f| **f == fault).count();
    println!(
        "chaos: {} instances, schedule x{scale} (timeout {:?}), {:.0} s; faults {}: {} SIGKILL \
         rounds (one instance of each example), {} Redis restarts, {} Redis pauses, {} Redis \
         flush (during a pause), {} PostgreSQL restarts, {} SIGSTOP pauses of an instance, \
         pauses of {:?}, outages of {:?}, Redis {}; {} answers lost on the way; all handled \
         {:.1} s after the last answer\n{report}{faults}",
        marketplace.len() + contentful.len(),
        schedule.timeout,
        started.elapsed().as_secs_f64(),
        injected.len(),
        count(Fault::Kill),
        count(Fault::RedisRestart),
        count(Fault::RedisPause),
        count(Fault::RedisFlush),
        count(Fault::PostgresRestart),
        count(Fault::Pause),
        pause,
        outage,
        if with_redis { "used" } else { "absent" },
        simulator.lost_answers(),
        settled.as_secs_f64(),
    );
    assert!(
        report.is_clean(),
        "every delivery that was not given up is recorded exactly once:\n{report}"
    );
    // The run meant something: every kind of fault happened, retries were needed, and most
    // deliveries got through.
    for fault in [
        Fault::Kill,
        Fault::RedisRestart,
        Fault::RedisPause,
        Fault::RedisFlush,
        Fault::PostgresRestart,
        Fault::Pause,
    ] {
        assert!(
            count(fault) >= 1 || !with_redis && fault != Fault::Kill,
            "{fault:?} injected"
        );
    }
    // The inbox keeps the providers' circuit breakers closed: no fault but a killed
    // instance's own requests fails more than 3 attempts in a row at either provider.
    for row in &faults.rows {
        if row.fault != Fault::Kill {
            assert!(
                row.contentstack_run <= 3 && row.contentful_run <= 3,
                "{:?}: a run of failed attempts longer than 3\n{faults}",
                row.fault
            );
        }
    }
    assert!(report.attempts > report.deliveries, "faults cost attempts");
    assert!(
        simulator.lost_answers() > 0,
        "handled deliveries came again"
    );
    assert!(
        report.acknowledged * 10 >= report.deliveries * 9,
        "at least 90 % acknowledged:\n{report}"
    );
    assert_eq!(
        report.recorded_once + report.exhausted.iter().filter(|(_, n)| *n == 0).count(),
        report.deliveries
    );
    drop(pg);
    let _ = std::fs::remove_dir_all(&run_dir);
}

/// What the providers saw during each kind of fault.
struct Faults {
    rows: Vec<FaultRow>,
}

struct FaultRow {
    fault: Fault,
    contentstack_run: usize,
    contentful_run: usize,
    p50: Option<Duration>,
    p99: Option<Duration>,
}

/// Per kind of fault, over the attempts sent while it lasted (and the attempt timeout after,
/// which is when its failures show): the longest run of failed attempts each provider saw, and
/// the acknowledgement latency.
fn per_fault(
    attempts: &[Attempt],
    windows: &[(Fault, Instant, Instant)],
    timeout: Duration,
) -> Faults {
    let mut kinds: Vec<Fault> = windows.iter().map(|(fault, ..)| *fault).collect();
    kinds.sort_by_key(|fault| format!("{fault:?}"));
    kinds.dedup();
    let (first, last) = (
        attempts
            .iter()
            .map(|a| a.sent)
            .min()
            .unwrap_or_else(Instant::now),
        Instant::now(),
    );
    let mut rows: Vec<FaultRow> = kinds
        .into_iter()
        .map(|kind| {
            let spans: Vec<(Instant, Instant)> = windows
                .iter()
                .filter(|(fault, ..)| *fault == kind)
                .map(|(_, began, ended)| (*began, *ended + timeout))
                .collect();
            let run = |contentstack: bool| {
                spans
                    .iter()
                    .map(|(from, until)| longest_failure_run(attempts, contentstack, *from, *until))
                    .max()
                    .unwrap_or(0)
            };
            let during: Vec<Attempt> = attempts
                .iter()
                .filter(|a| {
                    spans
                        .iter()
                        .any(|(from, until)| a.sent >= *from && a.sent <= *until)
                })
                .copied()
                .collect();
            FaultRow {
                fault: kind,
                contentstack_run: run(true),
                contentful_run: run(false),
                p50: latency_percentile(&during, first, last, 50.0),
                p99: latency_percentile(&during, first, last, 99.0),
            }
        })
        .collect();
    rows.push(FaultRow {
        fault: Fault::None,
        contentstack_run: longest_failure_run(attempts, true, first, last),
        contentful_run: longest_failure_run(attempts, false, first, last),
        p50: latency_percentile(attempts, first, last, 50.0),
        p99: latency_percentile(attempts, first, last, 99.0),
    });
    Faults { rows }
}

impl std::fmt::Display for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "fault | longest failed run (Contentstack, Contentful) | acknowledgement p50, p99"
        )?;
        let ms = |d: Option<Duration>| {
            d.map_or("-".to_owned(), |d| {
                format!("{:.1} ms", d.as_secs_f64() * 1e3)
            })
        };
        for row in &self.rows {
            let name = if row.fault == Fault::None {
                "the whole run".to_owned()
            } else {
                format!("{:?}", row.fault)
            };
            writeln!(
                f,
                "{name} | {}, {} | {}, {}",
                row.contentstack_run,
                row.contentful_run,
                ms(row.p50),
                ms(row.p99)
            )?;
        }
        Ok(())
    }
}

/// The `simulate` binary against one instance of each example (SQLite, in-memory records and
/// replay stores): a clean run exits 0 and prints the figures; bad arguments exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulate_binary_runs_against_a_fleet_and_reports_a_clean_run() {
    let run_dir = std::env::temp_dir().join(format!("countersign-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir).unwrap();
    let key = SigningKey::generate().unwrap();
    let (public, private) = (run_dir.join("public.pem"), run_dir.join("private.pem"));
    std::fs::write(&public, key.public_key().to_pkcs1_pem()).unwrap();
    std::fs::write(&private, key.to_pkcs1_pem()).unwrap();
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let mut marketplace = Instance::new(
        "marketplace-app",
        env(&[
            ("CONTENTSTACK_PUBLIC_KEY", public.to_str().unwrap()),
            ("CONTENTSTACK_HMAC_SECRETS", HMAC_SECRET),
            ("CONTENTSTACK_APP_UID", APP_UID),
        ]),
        run_dir.join("m"),
    );
    let mut contentful = Instance::new(
        "contentful-app",
        env(&[("CONTENTFUL_SIGNING_SECRETS", CONTENTFUL_SECRET)]),
        run_dir.join("c"),
    );
    marketplace.start().await;
    contentful.start().await;

    let simulate = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_simulate"))
                .args(args)
                .env("SIMULATE_HMAC_SECRET", HMAC_SECRET)
                .output()
                .unwrap()
        })
    };
    let args = |extra: &[&str]| -> Vec<String> {
        [
            "--contentstack",
            &marketplace.base(),
            "--contentstack-key",
            private.to_str().unwrap(),
            "--app-uid",
            APP_UID,
        ]
        .iter()
        .chain(extra)
        .map(|s| (*s).to_owned())
        .collect()
    };
    let clean = simulate(args(&[
        "--contentful",
        &contentful.base(),
        "--contentful-secret",
        CONTENTFUL_SECRET,
        "--deliveries",
        "40",
        "--seconds",
        "1",
        "--scale",
        "0.01",
    ]))
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&clean.stdout);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(
        out.contains(
            "deliveries 40, attempts 40, acknowledged 40, recorded once 40, lost 0, duplicated 0"
        ),
        "{out}"
    );

    // Contentful instances without their secret: refused before anything is sent.
    let bad = simulate(args(&["--contentful", &contentful.base()]))
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--contentful-secret"));
    let _ = std::fs::remove_dir_all(&run_dir);
}
