//! A fleet under faults: three instances of each example backend share one real Redis and one
//! real PostgreSQL while the delivery simulator plays Contentstack (RSA and HMAC, retries
//! re-signed or resent byte for byte) and Contentful (idempotency keys) against them, round
//! robin. Meanwhile instances are killed with SIGKILL and restarted, Redis is restarted and
//! once flushed, PostgreSQL is restarted, and one instance is paused with SIGSTOP past the
//! provider's timeout and resumed. At the end the simulator reads back, through the examples'
//! own APIs, what each stack and space recorded: every delivery that was not given up must be
//! there exactly once.
//!
//! CI runs it small (`CHAOS_DELIVERIES` 300 over `CHAOS_SECONDS` 12, the schedule at
//! `CHAOS_SCALE` 0.02, a fault every `CHAOS_FAULT_GAP` 1 s); `scripts/chaos` runs it at full
//! scale for `RELIABILITY.md`.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_core::contentful::SigningSecret;
use countersign_core::contentstack::{HmacSecret, SigningKey};
use countersign_tests::simulator::{Credentials, Fleet, Load, Report, Schedule, Simulator, run};
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
}

/// The faults in the order they are injected, over and over until the deliveries are sent.
const CYCLE: [Fault; 6] = [
    Fault::Kill,
    Fault::Pause,
    Fault::RedisRestart,
    Fault::RedisPause,
    Fault::Kill,
    Fault::PostgresRestart,
];

fn setting(name: &str, default: f64) -> f64 {
    std::env::var(name).map_or(default, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_under_kills_restarts_and_pauses_records_every_delivery_exactly_once() {
    let deliveries = setting("CHAOS_DELIVERIES", 300.0) as usize;
    let window = Duration::from_secs_f64(setting("CHAOS_SECONDS", 12.0));
    let scale = setting("CHAOS_SCALE", 0.02);
    let schedule = Schedule::contentstack(scale, Duration::from_secs(2));
    // Past the timeout and the next retry or two, which go to other instances.
    let pause = schedule.timeout + Duration::from_secs(2);

    let pg = Arc::new(tokio::task::spawn_blocking(Postgres::start).await.unwrap());
    let mut redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let key = SigningKey::generate().unwrap();
    let run_dir = std::env::temp_dir().join(format!("countersign-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir).unwrap();
    let public = run_dir.join("contentstack-public.pem");
    std::fs::write(&public, key.public_key().to_pkcs1_pem()).unwrap();
    let shared = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        [
            ("DATABASE_URL", pg.url().as_str()),
            ("REDIS_URL", &redis.url()),
        ]
        .iter()
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
    let mut flushed = false;
    let mut n = 0;
    while n < CYCLE.len() || started.elapsed() < window {
        tokio::time::sleep(gap).await;
        let fault = CYCLE[n % CYCLE.len()];
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
                tokio::time::sleep(Duration::from_millis(300)).await;
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
            Fault::RedisFlush => redis.flush(),
            Fault::PostgresRestart => {
                let stopped = pg.clone();
                tokio::task::spawn_blocking(move || stopped.stop())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
                let started = pg.clone();
                tokio::task::spawn_blocking(move || started.resume())
                    .await
                    .unwrap();
            }
            Fault::Pause => {
                let paused = &marketplace[(n + 2) % 3];
                paused.signal("-STOP");
                if flushed {
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
        n += 1;
    }
    let outcomes = traffic.await.unwrap().unwrap();
    let recorded = simulator.read_back(&load.tenants()).await.unwrap();
    let report = Report::new(&outcomes, &recorded, simulator.longest_failure_run());

    let count = |fault: Fault| injected.iter().filter(|f| **f == fault).count();
    println!(
        "chaos: {} instances, schedule x{scale} (timeout {:?}), {:.0} s; faults {}: {} SIGKILL \
         rounds (one instance of each example), {} Redis restarts, {} Redis pauses, {} Redis \
         flush (during a pause), {} PostgreSQL restarts, {} SIGSTOP pauses of an instance, \
         pauses of {:?}; {} answers lost on the way\n{report}",
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
        simulator.lost_answers(),
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
        assert!(count(fault) >= 1, "{fault:?} injected");
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
