//! Marketplace app: calling Contentstack as the app, against a local Developer Hub and CMA

use std::time::Instant;

use countersign_tests::developer_hub::{CLIENT_ID, CLIENT_SECRET, DeveloperHub};

use super::*;

pub(super) const REDIRECT_URI: &str = "https://app.example/oauth/callback";

/// A Contentstack key pair of the test's own (the app is told its public key, so that
/// `CONTENTSTACK_REGION` can point at the local hub): the private key and the public key's
/// file.
pub(super) fn contentstack_key(dir: &Path) -> (SigningKey, PathBuf) {
    let key = SigningKey::generate().unwrap();
    let public = dir.join("contentstack-public.pem");
    std::fs::write(&public, key.public_key().to_pkcs1_pem()).unwrap();
    (key, public)
}

/// The environment of an app that calls the hub as the app.
pub(super) fn oauth_env<'a>(hub: &'a DeveloperHub, public: &'a Path) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CONTENTSTACK_PUBLIC_KEY", public.to_str().unwrap()),
        ("CONTENTSTACK_APP_UID", DEV_APP),
        ("CONTENTSTACK_REGION", &hub.base),
        ("CONTENTSTACK_OAUTH_CLIENT_ID", CLIENT_ID),
        ("CONTENTSTACK_OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ("CONTENTSTACK_OAUTH_REDIRECT_URI", REDIRECT_URI),
    ]
}

pub(super) async fn get(app: &App, path: &str, session: Option<&str>) -> (u16, String) {
    let mut request = client().get(format!("{}{path}", app.base));
    if let Some(session) = session {
        request = request.bearer_auth(session);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The problem answer's reason code.
fn reason(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Whether any token the hub issued appears in `text`.
fn holds_a_token(hub: &DeveloperHub, text: &[u8]) -> bool {
    hub.issued_refresh_tokens()
        .iter()
        .flat_map(|refresh| [refresh.clone(), refresh.replace("hub-rt-", "hub-at-")])
        .any(|token| text.windows(token.len()).any(|w| w == token.as_bytes()))
}

#[tokio::test]
async fn marketplace_app_installs_through_oauth_and_calls_the_cma_as_the_app() {
    let hub = DeveloperHub::start(REDIRECT_URI, Duration::from_secs(3_600)).await;
    let dir = temp_dir("oauth-sqlite");
    let (key, public) = contentstack_key(&dir);
    let mut env = oauth_env(&hub, &public);
    env.push(("RUST_LOG", "debug"));
    let app = start("marketplace-app", &dir, &env).await;

    // The redirect after the install: exchanged at its location's region (the hub serves
    // every location), and kept for the installation the answer names.
    let code = hub.code_for("org", "bltO");
    let (status, page) = get(
        &app,
        &format!("/oauth/callback?code={code}&location=EU"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("installed"));
    assert_eq!(
        (hub.exchanges(), hub.bad_forms()),
        (1, 0),
        "{:?}",
        hub.forms()
    );
    let (status, body) = get(
        &app,
        &format!("/oauth/callback?code={code}&location=EU"),
        None,
    )
    .await;
    assert_eq!(
        (status, reason(&body)),
        (400, "oauth_invalid_grant".to_owned()),
        "a code works once"
    );
    let evil = hub.code_for("org", "bltO");
    let (status, body) = get(
        &app,
        &format!("/oauth/callback?code={evil}&location=https%3A%2F%2Fevil.example"),
        None,
    )
    .await;
    assert_eq!(
        (status, reason(&body)),
        (400, "oauth_invalid_location".to_owned())
    );
    for not_a_code in [
        "/oauth/callback?location=NA",
        "/oauth/callback?code=a%20b%3C",
    ] {
        let (status, body) = get(&app, not_a_code, None).await;
        assert_eq!(
            (status, reason(&body)),
            (400, "oauth_callback_invalid".to_owned())
        );
    }
    // An organization's installation: this app works in stacks; its tokens are not kept.
    let organization = hub.code_for("org", "");
    let (status, body) = get(&app, &format!("/oauth/callback?code={organization}"), None).await;
    assert_eq!((status, reason(&body)), (403, "stack_required".to_owned()));
    assert_eq!(hub.forms().len(), 3, "nothing sent for what is not a code");

    // The session's stack, as the app.
    let session = bootstrap(&app, &app_token(&key, "bltO")).await;
    let (status, types) = get(&app, "/api/content-types", Some(&session)).await;
    assert_eq!(status, 200, "{types}");
    let types: Value = serde_json::from_str(&types).unwrap();
    assert_eq!(types["content_types"][0]["title"], "Page of bltO");

    // Another stack of the same organization has no tokens of this one.
    let other = bootstrap(&app, &app_token(&key, "bltX")).await;
    let (status, body) = get(&app, "/api/content-types", Some(&other)).await;
    assert_eq!(
        (status, reason(&body)),
        (403, "oauth_not_authorized".to_owned())
    );
    assert_eq!(hub.cma_calls(), 1, "nothing was called for bltX");

    // The CMA refuses the token: one refresh, the call again.
    for token in hub.access_tokens_of("bltO") {
        hub.revoke(&token);
    }
    let (status, _) = get(&app, "/api/content-types", Some(&session)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (hub.refreshes(), hub.cma_unauthorized(), hub.cma_calls()),
        (1, 1, 2)
    );

    // Uninstalled: the installation's tokens are forgotten.
    let install = installation_body(DEV_APP, "install", "bltO");
    assert_eq!(deliver(&app, &key, &install).await.status(), 200);
    let uninstall = installation_body(DEV_APP, "uninstall", "bltO");
    assert_eq!(deliver(&app, &key, &uninstall).await.status(), 200);
    let (status, body) = get(&app, "/api/content-types", Some(&session)).await;
    assert_eq!(
        (status, reason(&body)),
        (403, "oauth_not_authorized".to_owned())
    );
    assert_eq!(hub.invalid_grants(), 1, "only the reused code");

    // No token in the database file or its log, nor in what the app printed at debug level.
    let mut kept = Vec::new();
    for name in [
        "marketplace-app.sqlite3",
        "marketplace-app.sqlite3-wal",
        "app.log",
    ] {
        kept.extend(std::fs::read(dir.join(name)).unwrap_or_default());
    }
    assert!(kept.len() > 10_000, "the database and the log were read");
    assert!(!holds_a_token(&hub, &kept), "a token at rest or in a log");
}

#[tokio::test]
async fn three_marketplace_instances_on_one_postgresql_refresh_once_per_expiry() {
    const INSTANCES: usize = 3;
    const CALLERS_PER_INSTANCE: usize = 6;
    const LOAD: Duration = Duration::from_secs(10);
    // Tokens that live 4 s: each is refreshed when 2 s are left (half its life).
    const LIFETIME: Duration = Duration::from_secs(4);

    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let url = pg.url();
    let hub = DeveloperHub::start(REDIRECT_URI, LIFETIME).await;
    let first_dir = temp_dir("oauth-fleet-0");
    let (key, public) = contentstack_key(&first_dir);
    let sealing_key = "c2VhbGluZy1rZXktb2YtdGhlLWZsZWV0LXRlc3QtMzI=";
    let mut apps = Vec::new();
    for n in 0..INSTANCES {
        let dir = if n == 0 {
            first_dir.clone()
        } else {
            temp_dir(&format!("oauth-fleet-{n}"))
        };
        let mut env = oauth_env(&hub, &public);
        env.extend([
            ("DATABASE_URL", url.as_str()),
            ("OAUTH_TOKEN_KEY", sealing_key),
            ("RUST_LOG", "debug"),
        ]);
        apps.push(start("marketplace-app", &dir, &env).await);
    }
    let code = hub.code_for("org", "bltF");
    let (status, _) = get(
        &apps[1],
        &format!("/oauth/callback?code={code}&location=NA"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Every instance's callers call the CMA as the app, across several expiries.
    let started = Instant::now();
    let mut callers = Vec::new();
    for app in &apps {
        let session = bootstrap(app, &app_token(&key, "bltF")).await;
        for _ in 0..CALLERS_PER_INSTANCE {
            let (base, session) = (app.base.clone(), session.clone());
            callers.push(tokio::spawn(async move {
                let (mut ok, mut failed) = (0_usize, Vec::new());
                let http = client();
                while started.elapsed() < LOAD {
                    let response = http
                        .get(format!("{base}/api/content-types"))
                        .bearer_auth(&session)
                        .send()
                        .await
                        .unwrap();
                    if response.status() == 200 {
                        ok += 1;
                    } else {
                        failed.push(response.text().await.unwrap());
                    }
                }
                (ok, failed)
            }));
        }
    }
    let (mut calls, mut failures) = (0, Vec::new());
    for caller in callers {
        let (ok, failed) = caller.await.unwrap();
        calls += ok;
        failures.extend(failed);
    }
    let refreshes = hub.refresh_times();
    let closest = refreshes
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .min()
        .unwrap_or(LIFETIME);
    eprintln!(
        "fleet of {INSTANCES}: {calls} CMA calls in {:?}, {} refreshes (closest {closest:?} apart), {} invalid_grant, {} CMA 401s, {} failed calls",
        started.elapsed(),
        refreshes.len(),
        hub.invalid_grants(),
        hub.cma_unauthorized(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed calls, the first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(hub.invalid_grants(), 0, "no refresh token was used twice");
    assert_eq!(hub.bad_forms(), 0);
    assert_eq!(hub.cma_unauthorized(), 0, "no expired token was used");
    assert!(calls > 100, "{calls} calls");
    // Each token is refreshed once, when its margin begins (2 s into its 4 s life): the
    // refreshes are a margin apart, never two for one expiry.
    assert!(
        refreshes.len() >= 3,
        "{} refreshes in {LOAD:?}",
        refreshes.len()
    );
    assert!(
        closest >= Duration::from_millis(1_500),
        "two refreshes {closest:?} apart"
    );

    // No token in the database's dump or in any instance's log.
    let (dump, pg) = tokio::task::spawn_blocking(move || (pg.dump(), pg))
        .await
        .unwrap();
    assert!(dump.contains("oauth_tokens"), "the dump holds the table");
    assert!(!holds_a_token(&hub, dump.as_bytes()), "a token in pg_dump");
    for app in &apps {
        let log = std::fs::read(app.data_dir.join("app.log")).unwrap();
        assert!(
            !holds_a_token(&hub, &log),
            "a token in {}",
            app.data_dir.display()
        );
    }
    drop(pg);
}

/// The install callback is open to anyone, and each code it is sent is exchanged with the
/// app's secret. One client's bogus callbacks, held long by a slow token endpoint, take at most
/// two of its places, so a real install from elsewhere still goes through; and a client whose
/// codes were refused three times is answered at once, without the token endpoint.
#[tokio::test]
async fn the_oauth_callback_is_bounded_per_client_and_bogus_codes_become_cheap() {
    let hub = DeveloperHub::start(REDIRECT_URI, Duration::from_secs(3_600)).await;
    hub.refuse_unknown_codes_after(Duration::from_millis(1_500));
    let dir = temp_dir("oauth-callback-bound");
    let (_key, public) = contentstack_key(&dir);
    let mut env = oauth_env(&hub, &public);
    // Behind a proxy on loopback: its X-Forwarded-For names each client.
    env.push(("TRUSTED_PROXIES", "127.0.0.1/32"));
    let app = start("marketplace-app", &dir, &env).await;
    let callback = |code: String, from: &'static str| {
        let url = format!("{}/oauth/callback?code={code}", app.base);
        async move {
            let response = client()
                .get(url)
                .header("x-forwarded-for", from)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            (status, if status == 200 { body } else { reason(&body) })
        }
    };
    let attacker = "198.51.100.7";
    let bogus: Vec<_> = (0..8)
        .map(|n| tokio::spawn(callback(format!("bogus-{n}"), attacker)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The attacker's eight are in flight or refused; a real install from elsewhere goes through.
    let (status, body) = callback(hub.code_for("org", "bltReal"), "203.0.113.9").await;
    assert_eq!(status, 200, "{body}");
    let mut answers = Vec::new();
    for call in bogus {
        answers.push(call.await.unwrap());
    }
    answers.sort();
    let refused_by_the_hub = answers
        .iter()
        .filter(|answer| **answer == (400, "oauth_invalid_grant".to_owned()))
        .count();
    let turned_away = answers
        .iter()
        .filter(|answer| **answer == (503, "oauth_unavailable".to_owned()))
        .count();
    assert_eq!(
        (refused_by_the_hub, turned_away),
        (2, 6),
        "two of the client's exchanges at once: {answers:?}"
    );
    // One more refused code, and the client's callbacks no longer reach the hub.
    assert_eq!(
        callback("bogus-8".to_owned(), attacker).await,
        (400, "oauth_invalid_grant".to_owned())
    );
    let asked = hub.forms().len();
    assert_eq!(
        callback("bogus-9".to_owned(), attacker).await,
        (503, "oauth_unavailable".to_owned())
    );
    assert_eq!(
        hub.forms().len(),
        asked,
        "answered without the token endpoint"
    );
    // Another client is not held to the attacker's record.
    assert_eq!(
        callback(hub.code_for("org", "bltOther"), "203.0.113.10")
            .await
            .0,
        200
    );
}
