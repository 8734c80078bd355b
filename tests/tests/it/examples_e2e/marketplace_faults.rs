//! Marketplace app: PostgreSQL and the key server's faults

use super::*;

#[tokio::test]
async fn marketplace_app_on_postgresql_is_shared_and_acknowledges_while_it_is_down() {
    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let url = pg.url();
    let dir = temp_dir("postgres-a");
    let first = start("marketplace-app", &dir, &[("DATABASE_URL", &url)]).await;
    let key = dev_key(&first);
    install(&first, &key, "bltP").await;

    // A second instance with its own DATA_DIR shares the records: the installation is there.
    let public = dir.join("dev-keys/public.pem");
    let second_dir = temp_dir("postgres-b");
    let second = start(
        "marketplace-app",
        &second_dir,
        &[
            ("DATABASE_URL", &url),
            ("CONTENTSTACK_PUBLIC_KEY", public.to_str().unwrap()),
            ("CONTENTSTACK_APP_UID", "dev-app"),
        ],
    )
    .await;
    let one = webhook_body(Duration::from_secs(1), "publish", "bltP", r#","n":1"#);
    assert_eq!(deliver(&second, &key, &one).await.status(), 200);
    // The same delivery at the other instance: the shared inbox has it.
    let again = deliver(&first, &key, &one).await;
    assert_eq!(
        (
            again.status().as_u16(),
            again.json::<Value>().await.unwrap()
        ),
        (200, json!({"status": "duplicate"}))
    );

    // PostgreSQL goes down: the first instance acknowledges on, into its spool, for the stack
    // its last reading of the installed stacks (every 2 s) found; a stack not there cannot be
    // checked.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let two = webhook_body(Duration::from_secs(1), "publish", "bltP", r#","n":2"#);
    let spooled = deliver(&first, &key, &two).await;
    assert_eq!(
        (
            spooled.status().as_u16(),
            spooled.json::<Value>().await.unwrap()
        ),
        (200, json!({"status": "accepted"}))
    );
    let unknown = webhook_body(Duration::from_secs(1), "publish", "bltUnknown", "");
    let unknown = deliver(&first, &key, &unknown).await;
    assert_eq!(
        (
            unknown.status().as_u16(),
            unknown.json::<Value>().await.unwrap()["code"].clone()
        ),
        (503, json!("tenant_check_unavailable"))
    );
    assert_eq!(
        std::fs::read_dir(dir.join("spool/marketplace_app_inbox"))
            .unwrap()
            .count(),
        1,
        "the delivery waits in the first instance's spool"
    );

    // It comes back: the spool moves into the inbox, and the delivery is recorded once, with
    // no restart of the app and no retry by the provider.
    let pg = tokio::task::spawn_blocking(move || {
        pg.resume();
        pg
    })
    .await
    .unwrap();
    let session = bootstrap(&second, &app_token(&key, "bltP")).await;
    let events = events_when(&second, &session, 2).await;
    assert_eq!(
        events["events"].as_array().unwrap().len(),
        2,
        "each delivery once: {events}"
    );
    drop(pg);
}

/// What the local HTTPS key server does.
#[derive(Clone, Copy, Debug)]
enum KeyServer {
    Serve(&'static str),
    Down,
    Garbage,
    Slow(&'static str),
}

/// An HTTPS well-known endpoint with a certificate from a local CA; returns the mode to
/// change, the key URL and the CA's PEM.
async fn https_key_server() -> (std::sync::Arc<std::sync::Mutex<KeyServer>>, String, String) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let ca = countersign_tests::LocalCa::new();

    let mode = std::sync::Arc::new(std::sync::Mutex::new(KeyServer::Down));
    let shared = std::sync::Arc::clone(&mode);
    let app = axum::Router::new().route(
        "/.well-known/public-keys.json",
        get(move || {
            let mode = *shared.lock().unwrap();
            async move {
                match mode {
                    KeyServer::Serve(document) => (StatusCode::OK, document.to_owned()),
                    KeyServer::Down => (StatusCode::SERVICE_UNAVAILABLE, "maintenance".to_owned()),
                    KeyServer::Garbage => (StatusCode::OK, "<html>not a key</html>".to_owned()),
                    KeyServer::Slow(document) => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        (StatusCode::OK, document.to_owned())
                    }
                }
            }
        }),
    );
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        ca.certificate.into_bytes(),
        ca.key.into_bytes(),
    )
    .await
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum_server::from_tcp_rustls(listener, tls)
            .serve(app.into_make_service())
            .await
    });
    let url = format!("https://localhost:{port}/.well-known/public-keys.json");
    (mode, url, ca.ca)
}

const KEYS_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/countersign-core/tests/data/keys"
);
const KEYS_JSON_A: &str = include_str!(
    "../../../../crates/countersign-core/tests/data/keys/contentstack-a.public-keys.json"
);
const KEYS_JSON_B: &str = include_str!(
    "../../../../crates/countersign-core/tests/data/keys/contentstack-b.public-keys.json"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketplace_app_rides_out_key_server_faults_over_https() {
    let (mode, url, ca) = https_key_server().await;
    let set = |m: KeyServer| *mode.lock().unwrap() = m;
    let dir = temp_dir("key-server");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let app = start(
        "marketplace-app",
        &dir,
        &[
            ("CONTENTSTACK_KEYS_URL", &url),
            ("CONTENTSTACK_KEYS_CA", ca_file.to_str().unwrap()),
            ("CONTENTSTACK_KEYS_TIMEOUT_SECS", "1"),
            ("CONTENTSTACK_KEYS_REFETCH_SECS", "0"),
        ],
    )
    .await;
    let key_a = SigningKey::from_file(format!("{KEYS_DIR}/contentstack-a.private.pem")).unwrap();
    let key_b = SigningKey::from_file(format!("{KEYS_DIR}/contentstack-b.private.pem")).unwrap();
    let body = |n: u32| {
        webhook_body(
            Duration::from_secs(1),
            "publish",
            "bltK",
            &format!(r#","n":{n}"#),
        )
    };
    let code = |response: reqwest::Response| async move { problem_code(response).await };

    // No key yet, the server down: 503, so that Contentstack retries.
    let (status, problem) = code(deliver(&app, &key_a, &body(1)).await).await;
    assert_eq!((status, problem.as_str()), (503, Some("key_unavailable")));

    // The server comes back: the app recovers on its own.
    set(KeyServer::Serve(KEYS_JSON_A));
    let mut status = 0;
    for _ in 0..30 {
        status = deliver(&app, &key_a, &body(1)).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200, "recovered once the key server answered");

    // Down, garbage, slow: the last good key keeps serving; a signature by another key makes
    // it ask (and fail), and is refused.
    for (n, fault) in [
        (2, KeyServer::Down),
        (3, KeyServer::Garbage),
        (4, KeyServer::Slow(KEYS_JSON_B)),
    ] {
        set(fault);
        assert_eq!(
            deliver(&app, &key_a, &body(n)).await.status(),
            200,
            "{fault:?}"
        );
        let started = std::time::Instant::now();
        let (status, problem) = code(deliver(&app, &key_b, &body(n + 10)).await).await;
        assert_eq!(
            (status, problem.as_str()),
            (401, Some("signature_mismatch")),
            "{fault:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{fault:?}: bounded by the timeout"
        );
    }

    // A rotation: the new key is picked up after the first signature the old one rejects.
    set(KeyServer::Serve(KEYS_JSON_B));
    assert_eq!(deliver(&app, &key_b, &body(5)).await.status(), 200);
}
