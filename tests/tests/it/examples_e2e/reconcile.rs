//! Reconciling with the providers' records (`countersign reconcile`): deliveries made while
//! every instance of an example was down, past the providers' retries, are found in the
//! providers' records, committed into the example's inbox and handled once; a second run finds
//! nothing missing. And the vendors' own CMA clients ask the record APIs what ours ask.

use countersign::contentstack::Region;
use countersign::reconcile::{ContentfulRecords, ContentstackRecords};
use countersign_tests::provider_records::{
    CMA_TOKEN, CONTENTFUL_WEBHOOK, CONTENTSTACK_WEBHOOK, MANAGEMENT_TOKEN, ProviderRecords, SPACE,
    STACK, Seen,
};

use super::*;

const WEBHOOK_SECRET: &str = "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr";

/// `countersign` with `args`: its exit code, stdout and stderr.
fn countersign(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary("countersign"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `countersign reconcile contentstack` of the records at `base` since `since`, in the
/// marketplace example's namespace, against `inbox` (its `--inbox` and `--table`), and `extra`.
fn contentstack_args(base: &str, since: &str, inbox: &[String], extra: &[&str]) -> Vec<String> {
    [
        "reconcile",
        "contentstack",
        "--region",
        base,
        "--api-key",
        STACK,
        "--management-token",
        MANAGEMENT_TOKEN,
        "--webhook",
        CONTENTSTACK_WEBHOOK,
        "--since",
        since,
        // The layer's replay namespace: the app uid it binds to.
        "--namespace",
        DEV_APP,
        "--inbox",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(inbox.iter().cloned())
    .chain(extra.iter().map(|s| (*s).to_owned()))
    .collect()
}

/// `countersign` with `args`, off the async threads.
async fn countersign_async(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        countersign(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap()
}

/// The third column of each attempt's line, counted, and the summary line.
fn words(stdout: &str) -> (std::collections::BTreeMap<String, usize>, String) {
    let mut lines: Vec<&str> = stdout.lines().collect();
    let summary = lines.pop().unwrap_or_default().to_owned();
    let mut words = std::collections::BTreeMap::new();
    for line in lines {
        let word = line.split('\t').nth(2).unwrap_or_default().to_owned();
        *words.entry(word).or_insert(0) += 1;
    }
    (words, summary)
}

fn counted(pairs: &[(&str, usize)]) -> std::collections::BTreeMap<String, usize> {
    pairs.iter().map(|(w, n)| ((*w).to_owned(), *n)).collect()
}

fn publish(n: usize) -> String {
    WebhookBody::new("entry", "publish")
        .with_api_key(STACK)
        .with_data(&json!({"entry": {"uid": format!("rc-{n}")}}))
        .to_json(SystemTime::now())
}

/// The entries of the stack's recorded events, with how many times each was recorded.
async fn recorded_entries(
    app: &App,
    session: &str,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    let events = events_when(app, session, n).await;
    let mut entries = std::collections::BTreeMap::new();
    for event in events["events"].as_array().unwrap() {
        let data = match &event["data"] {
            Value::String(text) => serde_json::from_str(text).unwrap(),
            other => other.clone(),
        };
        if let Some(uid) = data["entry"]["uid"].as_str() {
            *entries.entry(uid.to_owned()).or_insert(0) += 1;
        }
    }
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contentstack_deliveries_made_while_the_app_was_down_are_reconciled_once_on_sqlite() {
    contentstack_scenario(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contentstack_deliveries_made_while_the_app_was_down_are_reconciled_once_on_postgresql() {
    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    contentstack_scenario(Some(&pg)).await;
}

/// The marketplace example, on SQLite or on `pg`, down while deliveries are made, then
/// reconciled. The CLI's other paths (`--retry`, a disabled webhook, a refused token, bad
/// input) do not depend on the store: run on SQLite only.
async fn contentstack_scenario(pg: Option<&countersign_tests::Postgres>) {
    let dir = temp_dir(if pg.is_some() {
        "reconcile-cs-pg"
    } else {
        "reconcile-cs"
    });
    let database = pg.map(countersign_tests::Postgres::url);
    let env: Vec<(&str, &str)> = database
        .iter()
        .map(|url| ("DATABASE_URL", url.as_str()))
        .collect();
    let port = free_port();
    let app = start_on(port, "marketplace-app", &dir, &env).await;
    let key = dev_key(&app);
    let provider = ProviderRecords::start(dev_key(&app)).await;
    let url = format!("{}/webhooks/contentstack", app.base);
    let since = SystemTime::now() - Duration::from_secs(60);
    // Refused on purpose (the stack has not installed the app): never committed from the
    // record, which would go round the refusal.
    assert_eq!(provider.contentstack_send(&url, &publish(100)).await, 403);
    install(&app, &key, STACK).await;
    for n in 0..3 {
        assert_eq!(provider.contentstack_send(&url, &publish(n)).await, 200);
    }
    // Handled before the instance goes (a lease it held would keep them 30 s).
    recorded_entries(&app, &bootstrap(&app, &app_token(&key, STACK)).await, 3).await;
    // Every instance down, past the provider's retries, while 4 deliveries are made.
    drop(app);
    for n in 3..7 {
        assert_eq!(
            provider.contentstack_send(&url, &publish(n)).await,
            0,
            "nothing answers"
        );
    }
    let app = start_on(port, "marketplace-app", &dir, &env).await;
    let session = bootstrap(&app, &app_token(&key, STACK)).await;
    let inbox = match &database {
        Some(url) => vec![
            url.clone(),
            "--table".into(),
            "marketplace_app_inbox".into(),
        ],
        None => vec![format!(
            "sqlite:{}",
            dir.join("marketplace-app.sqlite3").display()
        )],
    };
    let since = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let base = provider.base.clone();
    let args = |extra: &[&str]| contentstack_args(&base, &since, &inbox, extra);

    let (code, stdout, stderr) = countersign_async(args(&[])).await;
    assert_eq!(code, 1, "a dry run finds 4 missing: {stdout}{stderr}");
    let (found, summary) = words(&stdout);
    assert_eq!(
        found,
        counted(&[("present", 3), ("missing", 4), ("refused", 1)]),
        "{stdout}"
    );
    assert_eq!(
        summary,
        "8 attempts: 3 present, 4 missing, 0 committed, 0 retried"
    );
    // Another namespace derives other ids: the deliveries the app took are not found under
    // them, and nothing is committed (each would be handled twice).
    let (code, stdout, stderr) =
        countersign_async(args(&["--namespace", "another-app", "--commit"])).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(
        words(&stdout).1,
        "8 attempts: 0 present, 7 missing, 0 committed, 0 retried"
    );
    assert!(stderr.contains("Nothing was committed"), "{stderr}");

    let (code, stdout, stderr) = countersign_async(args(&["--commit"])).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        words(&stdout).1,
        "8 attempts: 3 present, 0 missing, 4 committed, 0 retried"
    );
    let entries = recorded_entries(&app, &session, 7).await;
    assert_eq!(entries.len(), 7, "none lost: {entries:?}");
    assert!(entries.values().all(|&n| n == 1), "each once: {entries:?}");

    let (code, stdout, _) = countersign_async(args(&[])).await;
    assert_eq!(code, 0);
    assert_eq!(
        words(&stdout).1,
        "8 attempts: 7 present, 0 missing, 0 committed, 0 retried",
        "a second run finds nothing missing"
    );

    if pg.is_some() {
        return;
    }
    // Down again for two more; this time Contentstack is asked to send them again. It would
    // send the first with a `triggered_at` 40 minutes old, which the app refuses as stale:
    // that one is left missing, to be committed.
    drop(app);
    assert_eq!(provider.contentstack_send(&url, &publish(7)).await, 0);
    provider.age_last_execution(Duration::from_secs(40 * 60));
    assert_eq!(provider.contentstack_send(&url, &publish(8)).await, 0);
    let app = start_on(port, "marketplace-app", &dir, &env).await;
    let mut args_since_earlier = args(&["--retry"]);
    let at = args_since_earlier
        .iter()
        .position(|a| a == "--since")
        .unwrap()
        + 1;
    args_since_earlier[at] = (SystemTime::now() - Duration::from_secs(50 * 60))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let (code, stdout, stderr) = countersign_async(args_since_earlier.clone()).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(
        words(&stdout).1,
        "10 attempts: 7 present, 1 missing, 0 committed, 1 retried"
    );
    assert!(stdout.contains("too old to be sent again"), "{stdout}");
    let commit = args_since_earlier.len() - 1;
    args_since_earlier[commit] = "--commit".into();
    let (code, stdout, stderr) = countersign_async(args_since_earlier).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        words(&stdout).1,
        "10 attempts: 8 present, 0 missing, 1 committed, 0 retried"
    );
    let session = bootstrap(&app, &app_token(&key, STACK)).await;
    let entries = recorded_entries(&app, &session, 9).await;
    assert_eq!(entries.len(), 9, "{entries:?}");
    assert!(entries.values().all(|&n| n == 1), "each once: {entries:?}");
    assert!(
        !entries.contains_key("rc-100"),
        "the refused one is never recorded"
    );

    // A disabled webhook is said; a token the provider refuses is exit 3; bad input exit 2.
    provider.disable(true);
    let (code, _, stderr) = countersign_async(args(&[])).await;
    assert_eq!(code, 0);
    assert!(stderr.contains("disabled"), "{stderr}");
    let mut refused = args(&[]);
    let token = refused.iter().position(|a| a == MANAGEMENT_TOKEN).unwrap();
    refused[token] = "another-token".into();
    let (code, _, stderr) = countersign_async(refused).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("records_refused"), "{stderr}");
    let (code, _, stderr) = countersign_async(args(&["--commit", "--retry"])).await;
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contentful_calls_made_while_the_app_was_down_are_reconciled_once_on_postgresql() {
    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    contentful_scenario(Some(&pg)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contentful_calls_made_while_the_app_was_down_are_reconciled_once_on_sqlite() {
    contentful_scenario(None).await;
}

/// What the Contentful example recorded: with `pg`, every body in its table; without, its
/// records in memory (those of this process only), read through its signed API.
async fn recorded(app: &App, pg: Option<&countersign_tests::Postgres>, n: usize) -> String {
    if let Some(pg) = pg {
        return deliveries_when(pg, n).await;
    }
    let mut bodies = String::new();
    for _ in 0..100 {
        let path = "/api/deliveries";
        let request = RequestToSign::new(http::Method::GET, path);
        let context = Context {
            space_id: Some(SPACE.into()),
            environment_id: Some("master".into()),
            user_id: Some("user-1".into()),
            ..Context::default()
        };
        let signing = SigningSecret::new("c".repeat(64)).unwrap();
        let signed = sign(&signing, &request, SystemTime::now(), &context).unwrap();
        let mut get = client().get(format!("{}{path}", app.base));
        for (name, value) in signed.iter() {
            get = get.header(name, value);
        }
        let answer: Value = get.send().await.unwrap().json().await.unwrap();
        bodies = answer["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| format!("{}\n", d["body"]))
            .collect();
        if bodies.matches("entry-").count() >= n {
            return bodies;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} deliveries recorded within 10 s:\n{bodies}");
}

/// The Contentful example, its records in `pg` or in memory with its inbox in SQLite, down
/// while calls are made, then reconciled.
async fn contentful_scenario(pg: Option<&countersign_tests::Postgres>) {
    let dir = temp_dir(if pg.is_some() {
        "reconcile-cf-pg"
    } else {
        "reconcile-cf"
    });
    let mut env = vec![
        ("CONTENTFUL_SIGNING_SECRETS", "c".repeat(64)),
        (
            "CONTENTFUL_WEBHOOK_SECRETS",
            format!("{SPACE}={WEBHOOK_SECRET}"),
        ),
    ];
    if let Some(pg) = pg {
        env.push(("DATABASE_URL", pg.url()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let port = free_port();
    let app = start_on(port, "contentful-app", &dir, &env).await;
    let provider = ProviderRecords::start(SigningKey::generate().unwrap()).await;
    let url = format!("{}/contentful/webhooks", app.base);
    let send = |n: usize| {
        let (provider, url) = (provider.clone(), url.clone());
        async move {
            let body = format!(r#"{{"sys":{{"id":"entry-{n}"}}}}"#);
            provider
                .contentful_send(&url, WEBHOOK_SECRET, &format!("idem-{n}"), &body)
                .await
        }
    };
    for n in 0..3 {
        assert_eq!(send(n).await, 200);
    }
    // Handled before the instance goes (a lease it held would keep them 30 s).
    recorded(&app, pg, 3).await;
    drop(app);
    for n in 3..6 {
        assert_eq!(send(n).await, 0, "nothing answers");
    }
    let app = start_on(port, "contentful-app", &dir, &env).await;
    let base = provider.base.clone();
    let inbox = match pg {
        Some(pg) => vec![pg.url(), "--table".into(), "contentful_app_inbox".into()],
        None => vec![format!("sqlite:{}", dir.join("inbox.sqlite3").display())],
    };
    let args = |extra: &[&str]| -> Vec<String> {
        [
            "reconcile",
            "contentful",
            "--space",
            SPACE,
            "--cma-token",
            CMA_TOKEN,
            "--webhook",
            CONTENTFUL_WEBHOOK,
            "--base-url",
            &base,
            "--inbox",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain(inbox.iter().cloned())
        .chain(extra.iter().map(|s| (*s).to_owned()))
        .collect()
    };
    let (code, stdout, stderr) = countersign_async(args(&[])).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(words(&stdout).0, counted(&[("present", 3), ("missing", 3)]));
    assert!(
        stderr.contains("3 of its 6 recent calls"),
        "the health is said: {stderr}"
    );
    let (code, stdout, stderr) = countersign_async(args(&["--commit"])).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        words(&stdout).1,
        "6 attempts: 3 present, 0 missing, 3 committed, 0 retried"
    );
    // Each event recorded once, by the example's own transaction (in memory: those handled
    // since the restart, the three reconciled, and none of the three handled before).
    let handled = if pg.is_some() { 0..6 } else { 3..6 };
    let rows = recorded(&app, pg, handled.len()).await;
    for n in 0..6 {
        let expected = usize::from(handled.contains(&n));
        assert_eq!(
            rows.matches(&format!("entry-{n}")).count(),
            expected,
            "entry-{n} in\n{rows}"
        );
    }
    // Contentful's own retry of a reconciled call now is a duplicate.
    assert_eq!(send(4).await, 200);
    let (code, stdout, _) = countersign_async(args(&[])).await;
    assert_eq!(code, 0);
    assert_eq!(
        words(&stdout).1,
        "7 attempts: 7 present, 0 missing, 0 committed, 0 retried",
        "a second run finds nothing missing"
    );
    let rows = recorded(&app, pg, handled.len()).await;
    assert_eq!(
        rows.matches("entry-4").count(),
        1,
        "the retry was not handled again"
    );
    drop(app);
}

/// The bodies the Contentful example recorded, once there are `n`, for at most 10 s.
async fn deliveries_when(pg: &countersign_tests::Postgres, n: usize) -> String {
    let mut rows = String::new();
    for _ in 0..100 {
        rows = pg.query("SELECT body FROM contentful_deliveries ORDER BY body");
        if rows.lines().filter(|l| l.contains("entry-")).count() >= n {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} deliveries recorded within 10 s:\n{rows}");
}

/// A receiver that answers every delivery 200.
async fn sink() -> String {
    let app = axum::Router::new().fallback(|| async { "ok" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/hook")
}

/// The calls seen, by path, without the query's times (ours are the SDK's to the
/// millisecond).
fn by_path(seen: &[Seen]) -> Vec<Seen> {
    let mut seen = seen.to_vec();
    seen.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vendors_sdks_and_ours_ask_the_records_apis_the_same_things() {
    let provider = ProviderRecords::start(SigningKey::generate().unwrap()).await;
    let url = sink().await;
    for n in 0..2 {
        assert_eq!(provider.contentstack_send(&url, &publish(n)).await, 200);
    }
    for n in 0..2 {
        let status = provider
            .contentful_send(&url, WEBHOOK_SECRET, &format!("idem-{n}"), "{}")
            .await;
        assert_eq!(status, 200);
    }
    let from = SystemTime::now() - Duration::from_secs(600);
    let to = SystemTime::now() + Duration::from_secs(600);
    let text = |at: SystemTime| {
        let at = time::OffsetDateTime::from(at);
        at.replace_nanosecond(at.nanosecond() / 1_000_000 * 1_000_000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let host = provider.base.trim_start_matches("http://").to_owned();
    let input = json!({
        "host": host,
        "contentstack": {
            "api_key": STACK, "management_token": MANAGEMENT_TOKEN, "webhook": CONTENTSTACK_WEBHOOK,
            "query": {"skip": 0, "limit": 100, "from": text(from), "to": text(to)},
            "execution_uid": "bltexecution00000000",
        },
        "contentful": {
            "space": SPACE, "token": CMA_TOKEN, "webhook": CONTENTFUL_WEBHOOK,
            "query": {"skip": 0, "limit": 100}, "call_id": "call-00000002",
        },
    });
    let sdk = tokio::task::spawn_blocking(move || {
        countersign_tests::run_node("reconcile-records.mjs", &input)
    })
    .await
    .unwrap();
    assert_eq!(
        sdk,
        json!({
            "contentstack": {"executions": 2, "disabled": false, "retried": "The webhook was retried."},
            "contentful": {"calls": 2, "call": "call-00000002", "healthy": 2},
        }),
        "the SDKs read the local server"
    );
    let theirs = by_path(&provider.seen());
    provider.forget_seen();

    let region: Region = provider.base.parse().unwrap();
    let contentstack =
        ContentstackRecords::with_management_token(&region, STACK, MANAGEMENT_TOKEN).unwrap();
    let executions = contentstack
        .executions(CONTENTSTACK_WEBHOOK, from, Some(to))
        .await
        .unwrap();
    assert_eq!(executions.len(), 2);
    assert!(
        !contentstack
            .webhook_state(CONTENTSTACK_WEBHOOK)
            .await
            .unwrap()
            .disabled
    );
    contentstack
        .retry(CONTENTSTACK_WEBHOOK, "bltexecution00000000")
        .await
        .unwrap();
    let contentful = ContentfulRecords::new(SPACE, CMA_TOKEN)
        .unwrap()
        .with_base_url(&provider.base)
        .unwrap();
    let calls = contentful.calls(CONTENTFUL_WEBHOOK, None).await.unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        contentful.health(CONTENTFUL_WEBHOOK).await.unwrap().healthy,
        2
    );
    // Ours read every call's details; the SDK was asked for one.
    let ours: Vec<Seen> = by_path(&provider.seen())
        .into_iter()
        .filter(|seen| !seen.path.ends_with("/calls/call-00000003"))
        .collect();
    assert_eq!(ours.len(), theirs.len(), "{ours:#?}\n{theirs:#?}");
    for (ours, theirs) in ours.iter().zip(&theirs) {
        assert_eq!(ours.method, theirs.method);
        assert_eq!(ours.path, theirs.path);
        assert_eq!(ours.query, theirs.query, "{}", ours.path);
        assert_eq!(ours.headers, theirs.headers, "{}", ours.path);
        let body = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        assert_eq!(body(&ours.body), body(&theirs.body), "{}", ours.path);
    }
}

/// A Contentstack key of the test's own (its public half's file), and one local server that
/// plays the Developer Hub and the records' CMA, whose OAuth tokens for [`STACK`] read the
/// records: the region an app's tokens name.
async fn records_as_the_app(
    dir: &Path,
) -> (
    SigningKey,
    PathBuf,
    ProviderRecords,
    countersign_tests::developer_hub::DeveloperHub,
) {
    use super::marketplace_oauth::{REDIRECT_URI, contentstack_key};
    let (key, public) = contentstack_key(dir);
    let records = ProviderRecords::new(SigningKey::from_pem(&key.to_pkcs1_pem()).unwrap());
    let hub = countersign_tests::developer_hub::DeveloperHub::start_with(
        REDIRECT_URI,
        Duration::from_secs(3_600),
        records.router(),
    )
    .await;
    let records = records.served_at(&hub.base);
    let tokens = hub.clone();
    records.accept_bearer(move |token| tokens.access_tokens_of(STACK).iter().any(|t| t == token));
    (key, public, records, hub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marketplace_app_reconciles_its_installed_stacks_on_a_schedule() {
    use super::marketplace_oauth::{get, oauth_env};

    let dir = temp_dir("reconcile-scheduled");
    let (key, public, records, hub) = records_as_the_app(&dir).await;
    let schedule = format!("{STACK}={CONTENTSTACK_WEBHOOK}");
    let mut env = oauth_env(&hub, &public);
    env.extend([
        ("RECONCILE_EVERY_SECS", "1"),
        ("RECONCILE_WEBHOOKS", schedule.as_str()),
    ]);
    let port = free_port();
    let app = start_on(port, "marketplace-app", &dir, &env).await;
    install(&app, &key, STACK).await;
    let (status, page) = get(
        &app,
        &format!(
            "/oauth/callback?code={}&location=NA",
            hub.code_for("org", STACK)
        ),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let url = format!("{}/webhooks/contentstack", app.base);
    for n in 0..2 {
        assert_eq!(records.contentstack_send(&url, &publish(n)).await, 200);
    }
    let session = bootstrap(&app, &app_token(&key, STACK)).await;
    recorded_entries(&app, &session, 2).await;
    drop(app);
    for n in 2..5 {
        assert_eq!(records.contentstack_send(&url, &publish(n)).await, 0);
    }
    // Started again: within a few runs, what was lost is committed and handled.
    let app = start_on(port, "marketplace-app", &dir, &env).await;
    let session = bootstrap(&app, &app_token(&key, STACK)).await;
    let entries = recorded_entries(&app, &session, 5).await;
    assert_eq!(entries.len(), 5, "none lost: {entries:?}");
    assert!(entries.values().all(|&n| n == 1), "each once: {entries:?}");
    // Read as the app: with the installation's OAuth token, never a management token.
    let seen = records.seen();
    assert!(
        seen.iter().any(|s| s.path.ends_with("/executions")),
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| {
        s.headers
            .iter()
            .any(|(n, v)| n == "authorization" && v.starts_with("Bearer hub-at-"))
    }));
    // A disabled webhook is counted, run after run.
    records.disable(true);
    let mut unhealthy = None;
    for _ in 0..50 {
        let metrics = scrape(&app).await;
        unhealthy = metrics
            .get(r#"countersign_inbox_reconcile_unhealthy_total{provider="contentstack"}"#)
            .copied();
        if unhealthy.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(unhealthy.is_some_and(|n| n >= 1.0), "{unhealthy:?}");
    let metrics = scrape(&app).await;
    assert_eq!(
        metrics.get(r#"countersign_inbox_reconciled_total{found="committed"}"#),
        Some(&3.0),
        "{metrics:#?}"
    );
}

/// The figures of a larger run (`scripts/reconcile-run`, not CI): `RECONCILE_LIVE` deliveries
/// arrive, `RECONCILE_LOST` are made while the marketplace example (SQLite) is down; the CLI
/// reconciles (a dry run, then `--commit`); every delivery must be recorded once; then the
/// provider's own late retries of the lost ones arrive (duplicates), and a second run finds
/// nothing missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long run: scripts/reconcile-run"]
async fn reconcile_run() {
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (live, lost) = (
        number("RECONCILE_LIVE", 200),
        number("RECONCILE_LOST", 1000),
    );
    let dir = temp_dir("reconcile-run");
    let port = free_port();
    let app = start_on(port, "marketplace-app", &dir, &[]).await;
    let key = dev_key(&app);
    install(&app, &key, STACK).await;
    let provider = ProviderRecords::start(dev_key(&app)).await;
    let url = format!("{}/webhooks/contentstack", app.base);
    let database = dir.join("marketplace-app.sqlite3");
    let since = (SystemTime::now() - Duration::from_secs(60))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let events = |database: &Path| -> (usize, usize) {
        let db = countersign_inbox::rusqlite::Connection::open(database).unwrap();
        let recorded: usize = db
            .query_row(
                "SELECT count(*) FROM events WHERE module = 'entry'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let doubled: usize = db
            .query_row(
                "SELECT count(*) FROM (SELECT data FROM events WHERE module = 'entry' GROUP BY data HAVING count(*) > 1)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (recorded, doubled)
    };
    let wait_for = |n: usize| {
        let database = database.clone();
        async move {
            for _ in 0..600 {
                if events(&database).0 >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!(
                "fewer than {n} recorded within 60 s: {:?}",
                events(&database)
            );
        }
    };
    for n in 0..live {
        assert_eq!(provider.contentstack_send(&url, &publish(n)).await, 200);
    }
    wait_for(live).await;
    drop(app);
    let lost_bodies: Vec<String> = (live..live + lost).map(publish).collect();
    for body in &lost_bodies {
        assert_eq!(provider.contentstack_send(&url, body).await, 0);
    }
    let app = start_on(port, "marketplace-app", &dir, &[]).await;
    let inbox = format!("sqlite:{}", database.display());
    let base = provider.base.clone();
    let inbox = [inbox];
    let args = |extra: &[&str]| contentstack_args(&base, &since, &inbox, extra);
    let started = std::time::Instant::now();
    let (_, dry, _) = countersign_async(args(&[])).await;
    let dry_took = started.elapsed();
    let started = std::time::Instant::now();
    let (code, commit, stderr) = countersign_async(args(&["--commit"])).await;
    let commit_took = started.elapsed();
    assert_eq!(code, 0, "{stderr}");
    wait_for(live + lost).await;
    // Contentstack's own late retries of every lost delivery: each a duplicate.
    let mut duplicates = 0;
    for body in &lost_bodies {
        if provider.contentstack_send(&url, body).await == 200 {
            duplicates += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (recorded, doubled) = events(&database);
    let (code, again, _) = countersign_async(args(&[])).await;
    eprintln!(
        "reconcile run: {} attempts listed; dry run: {} ({:.2} s); --commit: {} ({:.2} s); \
         recorded {recorded} of {}, recorded twice {doubled}; {duplicates} late retries answered 200 (as duplicates); \
         second run: {}",
        live + lost,
        words(&dry).1,
        dry_took.as_secs_f64(),
        words(&commit).1,
        commit_took.as_secs_f64(),
        live + lost,
        words(&again).1,
    );
    assert_eq!((recorded, doubled, code), (live + lost, 0, 0));
    drop(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_of_a_fleet_reconciles_at_a_time() {
    use super::marketplace_oauth::{get, oauth_env};

    let pg = tokio::task::spawn_blocking(countersign_tests::Postgres::start)
        .await
        .unwrap();
    let dir = temp_dir("reconcile-fleet-lock");
    let (key, public, records, hub) = records_as_the_app(&dir).await;
    // Another instance of the fleet reconciles: it holds the fleet's lock (the example's
    // `RECONCILE_LOCK`).
    let other = example_support::postgres::pool(&pg.url())
        .unwrap()
        .get()
        .await
        .unwrap();
    other
        .execute("SELECT pg_advisory_lock(7262071)", &[])
        .await
        .unwrap();
    let schedule = format!("{STACK}={CONTENTSTACK_WEBHOOK}");
    let database = pg.url();
    let mut env = oauth_env(&hub, &public);
    env.extend([
        ("DATABASE_URL", database.as_str()),
        (
            "OAUTH_TOKEN_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ),
        ("RECONCILE_EVERY_SECS", "1"),
        ("RECONCILE_WEBHOOKS", schedule.as_str()),
    ]);
    let app = start("marketplace-app", &dir, &env).await;
    install(&app, &key, STACK).await;
    let code = hub.code_for("org", STACK);
    let (status, page) = get(
        &app,
        &format!("/oauth/callback?code={code}&location=NA"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let runs = || {
        records
            .seen()
            .iter()
            .filter(|seen| seen.path.ends_with("/executions"))
            .count()
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        runs(),
        0,
        "the other instance holds the lock: this one waits its turn"
    );
    other
        .execute("SELECT pg_advisory_unlock(7262071)", &[])
        .await
        .unwrap();
    for _ in 0..50 {
        if runs() > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the lock was released, and no run came within 5 s");
}
