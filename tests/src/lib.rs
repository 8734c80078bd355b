//! Helpers of countersign's workspace-level tests: running the vendors' reference code in
//! Node.js, and a small deterministic generator of test inputs.

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
