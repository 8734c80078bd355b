//! Marketplace app: custom headers, files, frames and connections

use super::*;

/// The status and reason code of a refusal.
pub(crate) async fn problem_code(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (
        status,
        response.json::<Value>().await.unwrap()["code"].clone(),
    )
}

/// The permission bits of `path`.
pub(crate) fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn marketplace_app_requires_the_webhooks_custom_headers_from_the_environment() {
    let dir = temp_dir("required-headers");
    let app = start(
        "marketplace-app",
        &dir,
        &[(
            "WEBHOOK_REQUIRED_HEADERS",
            "X-Hook-Token: t0ken; X-Tenant: acme",
        )],
    )
    .await;
    let key = dev_key(&app);
    let install = installation_body(DEV_APP, "install", "bltA");
    let send = |headers: &'static [(&'static str, &'static str)]| {
        let mut request = client()
            .post(format!("{}/webhooks/contentstack", app.base))
            .header("content-type", "application/json")
            .header(
                "x-contentstack-request-signature",
                key.sign_webhook(install.as_bytes(), SaltLength::Digest)
                    .unwrap(),
            );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(install.clone()).send()
    };
    // Authentic, but without the custom headers: refused before the signature is looked at.
    assert_eq!(
        problem_code(send(&[]).await.unwrap()).await,
        (401, json!("header_missing"))
    );
    assert_eq!(
        problem_code(
            send(&[("x-hook-token", "t0ken"), ("x-tenant", "other")])
                .await
                .unwrap()
        )
        .await,
        (401, json!("header_mismatch"))
    );
    let response = send(&[("x-hook-token", "t0ken"), ("x-tenant", "acme")])
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A header with an empty value in the configuration: the app refuses to start.
    let output = std::process::Command::new(binary("marketplace-app"))
        .env_clear()
        .env("DATA_DIR", temp_dir("required-headers-empty"))
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("WEBHOOK_REQUIRED_HEADERS", "X-Hook-Token:")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("empty"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn marketplace_app_guards_its_files_its_frames_and_its_connections() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = temp_dir("hardened");
    let (app, key) = installed_with_one_event(&dir).await;
    // Keys, secrets and the database: this user's only.
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("dev-keys")), 0o700);
    assert_eq!(mode(&dir.join("dev-keys/private.pem")), 0o600);
    assert_eq!(mode(&dir.join("session-secret")), 0o600);
    assert_eq!(mode(&dir.join("marketplace-app.sqlite3")), 0o600);

    // Only Contentstack, and this machine in dev mode, may frame a UI page.
    let response = client()
        .get(format!(
            "{}/ui/sidebar?app-token={}",
            app.base,
            app_token(&key, "bltA")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        policy
            .starts_with("frame-ancestors https://app.contentstack.com https://*.contentstack.com"),
        "{policy}"
    );

    // A client that trickles its request head is cut off after the header-read timeout.
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection stayed open for 30 s");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "closed after {waited:?}"
    );
}
