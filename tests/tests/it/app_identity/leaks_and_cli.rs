//! What must not leak, and the command line

use super::*;

#[test]
fn hosts_and_ids_that_could_leak_or_redirect_the_token_are_refused() {
    let identity = || AppIdentity::new(APP, AppKey::from_pem(KEY_A).unwrap());
    for host in [
        "http://api.contentful.com",
        "ftp://x",
        "https://api.contentful.com/path",
        "api.contentful.com",
    ] {
        assert!(identity().with_host(host).is_err(), "{host}");
    }
    for host in [
        "https://api.eu.contentful.com",
        "https://api.contentful.com/",
        "http://localhost:8080",
    ] {
        assert!(identity().with_host(host).is_ok(), "{host}");
    }
    assert!(identity().with_key_id("a/b").is_err());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (space, env) in [("..", ENV), (SPACE, "a/../b"), (SPACE, ""), ("s p", ENV)] {
        let error = runtime
            .block_on(identity().access_token(space, env))
            .unwrap_err();
        assert_eq!(
            error.kind(),
            AccessTokenErrorKind::Config,
            "{space:?} {env:?}"
        );
    }
}

#[tokio::test]
async fn no_token_or_key_reaches_debug_output() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    let identity = server.identity(KEY_A);
    let token = identity.access_token(SPACE, ENV).await.unwrap();
    let debug = format!(
        "{token:?} {identity:?} {:?}",
        AppKey::from_pem(KEY_A).unwrap()
    );
    assert!(!debug.contains(token.expose()), "{debug}");
    let body = KEY_A.lines().nth(3).unwrap();
    assert!(!debug.contains(body), "{debug}");
    assert!(debug.contains("expires_at"));
}

fn cli() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("countersign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_an_access_token_or_says_why_not() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A), ("key-b", KEY_B)]).await;
    let dir = std::env::temp_dir().join(format!("countersign-access-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("app.pem");
    std::fs::write(&key_file, KEY_A).unwrap();
    let run = move |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let output = std::process::Command::new(cli())
                .args(&args)
                .output()
                .unwrap();
            (
                output.status.code(),
                String::from_utf8(output.stdout).unwrap(),
                String::from_utf8(output.stderr).unwrap(),
            )
        })
    };
    let args = |key_id: &str, env: &str| -> Vec<String> {
        [
            "contentful",
            "access-token",
            "--app-id",
            APP,
            "--private-key",
            key_file.to_str().unwrap(),
            "--space-id",
            SPACE,
            "--environment-id",
            env,
            "--key-id",
            key_id,
            "--host",
            &server.url,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let (code, stdout, stderr) = run(args("key-a", ENV)).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim().split('.').count(), 3, "{stdout}");

    let (code, stdout, stderr) = run(args("key-b", ENV)).await.unwrap();
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("403") && stderr.contains("AccessDenied"),
        "{stderr}"
    );

    let (code, _, stderr) = run(args("key-a", "no/such")).await.unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    let mut missing = args("key-a", ENV);
    missing[5] = dir.join("absent.pem").to_str().unwrap().to_owned();
    let (code, _, stderr) = run(missing).await.unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
