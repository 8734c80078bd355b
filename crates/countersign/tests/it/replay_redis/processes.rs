//! An instance as a process, killed mid-handler

use super::*;

/// One instance of the fleet as its own process (`examples/fleet_node.rs`), killed when dropped.
pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) url: String,
    pub(crate) port: u16,
}

impl Node {
    pub(crate) async fn start(
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
    pub(crate) fn kill(&mut self) {
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
pub(crate) async fn attempt(url: &str, body: &str) -> Option<u16> {
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

pub(crate) fn records_file(name: &str) -> std::path::PathBuf {
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
