//! Helpers of countersign's workspace-level tests: running the vendors' reference code in
//! Node.js, a small deterministic generator of test inputs, throwaway PostgreSQL clusters, a
//! local Contentstack [`developer_hub`] (token endpoint and CMA), a local AWS Lambda
//! [`lambda_runtime_api`], and the delivery [`simulator`]. The README's and the guides' examples run as its doc tests: this is the one
//! crate that has both `countersign` and `countersign-inbox` with every feature.

pub mod developer_hub;
pub mod lambda_runtime_api;
pub mod provider_records;
pub mod simulator;

/// The README's and the guides' examples, compiled and run as doc tests.
macro_rules! doc_tests {
    ($($name:ident = $path:literal;)*) => {$(
        #[cfg(doctest)]
        #[doc = include_str!($path)]
        struct $name;
    )*};
}

doc_tests! {
    ReadmeDoctests = "../../README.md";
    CompositionDoctests = "../../docs/composition.md";
    ContentfulDoctests = "../../docs/contentful.md";
    ContentstackDoctests = "../../docs/contentstack.md";
    DeliveryDoctests = "../../docs/delivery.md";
    EventsDoctests = "../../docs/events.md";
    AppIdentityDoctests = "../../docs/app-identity.md";
    TestingDoctests = "../../docs/testing.md";
    InboxReadmeDoctests = "../../crates/countersign-inbox/README.md";
    LambdaDoctests = "../../docs/lambda.md";
}

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Once;

use std::io::Write as _;

/// The folder of the Node.js interop scripts and their committed lockfile.
#[must_use]
pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop/node")
}

/// Installs the reference packages from the committed lockfile (`npm ci`) unless they are.
///
/// # Panics
/// When `npm ci` fails: the interop tests cannot run without the reference code.
pub fn ensure_node_modules() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let dir = interop_dir();
        if dir.join("node_modules/.package-lock.json").exists() {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed for the interop tests");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    });
}

/// Runs `node <script>` from the interop folder with `input` on stdin; returns its stdout
/// parsed as JSON.
///
/// # Panics
/// When node fails or prints something that is not JSON.
#[must_use]
pub fn run_node(script: &str, input: &serde_json::Value) -> serde_json::Value {
    ensure_node_modules();
    let mut child = Command::new("node")
        .arg(script)
        .current_dir(interop_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is needed for the interop tests");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let payload = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(payload.as_bytes()));
    let output = child.wait_with_output().expect("node ran");
    writer
        .join()
        .expect("writer thread")
        .expect("wrote node's input");
    assert!(
        output.status.success(),
        "node {script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("node printed JSON")
}

/// A small deterministic generator (SplitMix64), so that a failing case can be reproduced.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n as u64).unwrap_or(0)
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// A string of up to `max` characters drawn from `alphabet`.
    pub fn string(&mut self, alphabet: &[&str], max: usize) -> String {
        let len = self.below(max + 1);
        (0..len).map(|_| self.pick(alphabet)).collect()
    }
}

/// A certificate authority made for one test, and a certificate it signed for this machine
/// (`localhost` and `127.0.0.1`), all PEM.
#[derive(Debug, Clone)]
pub struct LocalCa {
    /// The authority's certificate: what a client is told to trust.
    pub ca: String,
    /// The server's certificate.
    pub certificate: String,
    /// The server's private key.
    pub key: String,
}

impl LocalCa {
    /// A new authority and server certificate.
    ///
    /// # Panics
    /// When key generation fails.
    #[must_use]
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).expect("a self-signed CA");
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("parameters");
        leaf.subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        let key = KeyPair::generate().expect("a server key");
        let leaf = leaf
            .signed_by(&key, &ca, &ca_key)
            .expect("a server certificate");
        Self {
            ca: ca.pem(),
            certificate: leaf.pem(),
            key: key.serialize_pem(),
        }
    }
}

impl Default for LocalCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A throwaway PostgreSQL cluster (`initdb` and `pg_ctl` from Debian's `postgresql`) on a free
/// loopback port under a temporary directory, as an unprivileged user when the tests run as
/// root (`nobody`: PostgreSQL refuses root). Nothing depends on a system service. Stopped
/// (immediately) and removed when dropped.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    tls: bool,
}

impl Postgres {
    /// Creates the cluster and starts it.
    ///
    /// # Panics
    /// When PostgreSQL is not installed (`scripts/test` installs it) or does not start.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Creates the cluster and starts it with TLS on (`ssl=on`), serving the PEM certificate
    /// chain `certificate` with its PEM `key`. Clients may still connect without TLS.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    #[must_use]
    pub fn start_with_tls(certificate: &str, key: &str) -> Self {
        Self::start_with(Some((certificate, key)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Self {
        let bin = postgres_bin();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("countersign-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the cluster's directory");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "nobody", dir.to_str().expect("a UTF-8 temp dir")])
                .status()
                .expect("chown");
            assert!(status.success(), "chown nobody {}", dir.display());
        }
        let pg = Self {
            dir,
            bin,
            port,
            tls: tls.is_some(),
        };
        pg.run(
            "initdb",
            &[
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
                &pg.data(),
            ],
        );
        if let Some((certificate, key)) = tls {
            // PostgreSQL reads its key only when its own user alone may.
            for (name, pem) in [("server.crt", certificate), ("server.key", key)] {
                let path = pg.dir.join("data").join(name);
                std::fs::write(&path, pem).expect("the server's certificate and key");
                let path = path.display().to_string();
                let owner = if is_root() { "nobody" } else { "" };
                for (program, arg) in [("chmod", "0600"), ("chown", owner)] {
                    if !arg.is_empty() {
                        let status = Command::new(program).args([arg, &path]).status();
                        assert!(status.is_ok_and(|s| s.success()), "{program} {arg} {path}");
                    }
                }
            }
        }
        pg.resume();
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// What `pg_dump` writes of the database: every row, as a backup would hold it.
    ///
    /// # Panics
    /// When `pg_dump` fails.
    #[must_use]
    pub fn dump(&self) -> String {
        let output = self.client_tool("pg_dump", &[]);
        assert!(
            output.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The rows `sql` selects, one line each (`psql`'s unaligned output), for a failing test to
    /// show.
    ///
    /// # Panics
    /// When `psql` cannot run.
    #[must_use]
    pub fn query(&self, sql: &str) -> String {
        let output = self.client_tool("psql", &["-A", "-t", "-c", sql]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// `program` (`pg_dump`, `psql`) run against the database `postgres` with `args`.
    fn client_tool(&self, program: &str, args: &[&str]) -> std::process::Output {
        let port = self.port.to_string();
        self.command(program)
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    /// Stops the server (fast shutdown: connections are closed); the data stays.
    pub fn stop(&self) {
        self.run("pg_ctl", &["stop", "-w", "-m", "fast", "-D", &self.data()]);
    }

    /// Starts the server again on the same port with the same data.
    ///
    /// # Panics
    /// When it does not start.
    pub fn resume(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        if self.tls {
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let log = self.dir.join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
            ],
        );
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// `program` of the cluster's PostgreSQL, as `nobody` when the tests run as root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "nobody", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", "immediate", "-D", &data])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where `initdb` and `pg_ctl` are: Debian keeps them under `/usr/lib/postgresql/<version>/bin`.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|bin| bin.join("initdb").exists());
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL is needed (scripts/test installs Debian's postgresql)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A throwaway `redis-server` on a free loopback port, without persistence (a restart loses
/// everything, as a crashed cache node does). Stopped when dropped.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    child: Option<std::process::Child>,
}

impl Redis {
    /// Starts it.
    ///
    /// # Panics
    /// When `redis-server` is not installed (`scripts/test` installs it) or does not start.
    #[must_use]
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self { port, child: None };
        redis.resume();
        redis
    }

    /// `redis://127.0.0.1:<port>/`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills it (SIGKILL): every client's connection breaks, and what it held is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    ///
    /// # Panics
    /// When it does not start.
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed (scripts/test installs it)");
        self.child = Some(child);
        for _ in 0..200 {
            if self.command("PING").as_deref() == Some("+PONG") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Sends `signal` to the server (`-STOP` pauses it: clients wait on it, as on a stalled
    /// node; `-CONT` resumes it).
    ///
    /// # Panics
    /// When it is not running or `kill` fails.
    pub fn signal(&self, signal: &str) {
        assert!(self.send_signal(signal), "kill {signal} redis-server");
    }

    /// Sends `signal`; whether it was delivered.
    fn send_signal(&self, signal: &str) -> bool {
        self.child.as_ref().is_some_and(|child| {
            Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .is_ok_and(|status| status.success())
        })
    }

    /// `FLUSHALL`: every key is gone, the server stays up.
    ///
    /// # Panics
    /// When the server does not say OK.
    pub fn flush(&self) {
        assert_eq!(self.command("FLUSHALL").as_deref(), Some("+OK"));
    }

    /// Sends one inline command; the first line of the answer.
    fn command(&self, command: &str) -> Option<String> {
        use std::io::{BufRead as _, BufReader};
        let timeout = std::time::Duration::from_secs(2);
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = std::net::TcpStream::connect_timeout(&address, timeout).ok()?;
        stream.set_read_timeout(Some(timeout)).ok()?;
        stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        Some(line.trim_end().to_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // A paused server is continued first, so that the kill is not held up.
        self.send_signal("-CONT");
        self.stop();
    }
}
