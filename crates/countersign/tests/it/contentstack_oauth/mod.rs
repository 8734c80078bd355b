//! The OAuth client against a local Developer Hub that issues short-lived tokens, rotates
//! refresh tokens and refuses a used one with 400 `invalid_grant`, as a fleet would meet it.

#![cfg(feature = "oauth")]
#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use countersign::Clock;
use countersign::contentstack::Region;
use countersign::contentstack::oauth::RefreshToken;
use countersign::contentstack::oauth::{Client, ClientSecret};
use countersign::contentstack::oauth::{
    ContentstackOAuth, Installation, MemoryTokenStore, OAuthErrorKind, StoreError, StoreErrorKind,
    StoredTokens, TokenStore,
};

/// What the local Developer Hub saw and issued.
#[derive(Default)]
struct Hub {
    forms: Mutex<Vec<String>>,
    refreshes: AtomicUsize,
    invalid_grants: AtomicUsize,
    issued: AtomicUsize,
    /// Refresh tokens that still work; each refresh spends one and issues the next.
    live: Mutex<HashSet<String>>,
}

async fn developer_hub(lifetime_s: u64) -> (Region, Arc<Hub>) {
    let hub = Arc::new(Hub::default());
    let state = Arc::clone(&hub);
    let app = Router::new().route(
        "/apps-api/token",
        post(move |form: String| {
            let hub = Arc::clone(&state);
            async move {
                hub.forms.lock().unwrap().push(form.clone());
                let fields: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes())
                    .into_owned()
                    .collect();
                let field = |name: &str| {
                    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
                };
                let grant = field("grant_type").unwrap_or_default();
                if field("client_id").as_deref() != Some("cid")
                    || field("client_secret").as_deref() != Some("s3cret")
                {
                    return (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#.to_owned());
                }
                if grant == "refresh_token" {
                    // Some time on the wire, so that concurrent refreshes would overlap.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    hub.refreshes.fetch_add(1, Ordering::SeqCst);
                    let token = field("refresh_token").unwrap_or_default();
                    if !hub.live.lock().unwrap().remove(&token) {
                        hub.invalid_grants.fetch_add(1, Ordering::SeqCst);
                        return (
                            StatusCode::BAD_REQUEST,
                            r#"{"error":"invalid_grant","error_description":"refresh token used"}"#.to_owned(),
                        );
                    }
                } else if field("code").as_deref() == Some("user-code") {
                    return (
                        StatusCode::OK,
                        r#"{"access_token":"user-at","refresh_token":"user-rt","expires_in":3600,"organization_uid":"org1","authorization_type":"user","user_uid":"u1","stack_api_key":"blt1"}"#.to_owned(),
                    );
                } else if field("code").as_deref() != Some("good-code") {
                    return (
                        StatusCode::BAD_REQUEST,
                        r#"{"error":"invalid_grant","error_description":"bad code"}"#.to_owned(),
                    );
                }
                let n = hub.issued.fetch_add(1, Ordering::SeqCst) + 1;
                let refresh = format!("rt-{n}");
                hub.live.lock().unwrap().insert(refresh.clone());
                (
                    StatusCode::OK,
                    format!(
                        r#"{{"access_token":"at-{n}","refresh_token":"{refresh}","token_type":"Bearer","expires_in":{lifetime_s},"location":"EU","organization_uid":"org1","authorization_type":"app","stack_api_key":"blt1"}}"#
                    ),
                )
            }
        }),
    );
    // The CMA: the newest access token only, of stack blt1.
    let cma = Arc::clone(&hub);
    let app = app.route(
        "/v3/content_types",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let hub = Arc::clone(&cma);
            async move {
                let newest = format!("Bearer at-{}", hub.issued.load(Ordering::SeqCst));
                if headers["authorization"] == newest.as_str() && headers["api_key"] == "blt1" {
                    (StatusCode::OK, r#"{"content_types":[]}"#)
                } else {
                    (StatusCode::UNAUTHORIZED, r#"{"error_code":105}"#)
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}").parse().unwrap(), hub)
}

/// A clock that tests move forward.
fn clock() -> (Clock, Arc<AtomicU64>) {
    let offset = Arc::new(AtomicU64::new(0));
    let shared = Arc::clone(&offset);
    let clock = Clock::from_fn(move || {
        SystemTime::now() + Duration::from_secs(shared.load(Ordering::SeqCst))
    });
    (clock, offset)
}

fn client() -> Client {
    Client::new("cid", "https://my.app/cb").with_secret(ClientSecret::new("s3cret").unwrap())
}

fn installation() -> Installation {
    Installation {
        organization_uid: "org1".into(),
        stack_api_key: Some("blt1".into()),
    }
}

#[tokio::test]
async fn a_code_is_exchanged_at_its_location_and_the_installations_tokens_are_kept() {
    let (region, hub) = developer_hub(3600).await;
    let store = Arc::new(MemoryTokenStore::new());
    let oauth = ContentstackOAuth::new(client(), region.clone(), Arc::clone(&store));
    let installation = oauth
        .exchange("good-code", Some("AZURE_EU"), None)
        .await
        .unwrap();
    assert_eq!(installation, self::installation());
    assert_eq!(
        hub.forms.lock().unwrap().as_slice(),
        [
            "grant_type=authorization_code&code=good-code&redirect_uri=https%3A%2F%2Fmy.app%2Fcb&client_id=cid&client_secret=s3cret"
        ]
    );
    assert_eq!(
        oauth.access_token(&installation).await.unwrap().expose(),
        "at-1"
    );
    let call = oauth.cma(&installation).await.unwrap();
    let (base, headers) = (call.base_url.clone(), call.headers.clone());
    assert_eq!(base, format!("{}/v3", region.location()));
    assert_eq!(headers["authorization"], "Bearer at-1");
    assert!(headers["authorization"].is_sensitive());
    assert_eq!(headers["api_key"], "blt1");

    let refused = oauth
        .exchange("used-code", Some("EU"), None)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), OAuthErrorKind::InvalidGrant);
    let redirected = oauth
        .exchange("good-code", Some("https://evil.example"), None)
        .await
        .unwrap_err();
    assert_eq!(redirected.kind(), OAuthErrorKind::InvalidLocation);
    assert_eq!(
        hub.forms.lock().unwrap().len(),
        2,
        "nothing was sent for a location that is a URL"
    );
    let member = oauth.exchange("user-code", None, None).await.unwrap_err();
    assert_eq!(member.kind(), OAuthErrorKind::Refused);
    assert_eq!(
        oauth.access_token(&installation).await.unwrap().expose(),
        "at-1",
        "a member's user token never replaces the installation's app token"
    );

    let other = Installation {
        organization_uid: "org1".into(),
        stack_api_key: Some("blt2".into()),
    };
    assert_eq!(
        oauth.access_token(&other).await.unwrap_err().kind(),
        OAuthErrorKind::NotAuthorized,
        "another stack of the same organization has no tokens of this one"
    );
    oauth.forget(&installation).await.unwrap();
    assert_eq!(
        oauth.access_token(&installation).await.unwrap_err().kind(),
        OAuthErrorKind::NotAuthorized
    );
    assert!(store.load(&installation).await.unwrap().is_none());
}

#[tokio::test]
async fn a_token_is_refreshed_within_the_margin_with_the_rotated_refresh_token() {
    let (region, hub) = developer_hub(100).await;
    let (clock, offset) = clock();
    let oauth = ContentstackOAuth::new(client(), region, MemoryTokenStore::new()).with_clock(clock);
    let installation = oauth.exchange("good-code", None, None).await.unwrap();
    // Lifetime 100 s: the margin is 50 s (half of it, less than 60 s).
    offset.store(49, Ordering::SeqCst);
    assert_eq!(
        oauth.access_token(&installation).await.unwrap().expose(),
        "at-1"
    );
    offset.store(51, Ordering::SeqCst);
    assert_eq!(
        oauth.access_token(&installation).await.unwrap().expose(),
        "at-2"
    );
    offset.store(102, Ordering::SeqCst);
    assert_eq!(
        oauth.access_token(&installation).await.unwrap().expose(),
        "at-3"
    );
    let forms = hub.forms.lock().unwrap().clone();
    assert!(
        forms[1].starts_with("grant_type=refresh_token&refresh_token=rt-1&"),
        "{}",
        forms[1]
    );
    assert!(
        forms[2].starts_with("grant_type=refresh_token&refresh_token=rt-2&"),
        "the rotated one: {}",
        forms[2]
    );
    assert_eq!(hub.invalid_grants.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_store_refresh_once_per_expiry_and_never_with_a_used_token() {
    let (region, hub) = developer_hub(100).await;
    let (clock, offset) = clock();
    let store = Arc::new(MemoryTokenStore::new());
    let instances: Vec<_> = (0..3)
        .map(|_| {
            ContentstackOAuth::new(client(), region.clone(), Arc::clone(&store))
                .with_clock(clock.clone())
        })
        .collect();
    let installation = instances[0]
        .exchange("good-code", None, None)
        .await
        .unwrap();
    for expiry in 1..=3u64 {
        offset.store(expiry * 100, Ordering::SeqCst);
        let calls = (0..60).map(|i| {
            let (oauth, installation) = (instances[i % 3].clone(), installation.clone());
            tokio::spawn(async move {
                oauth
                    .access_token(&installation)
                    .await
                    .unwrap()
                    .expose()
                    .to_owned()
            })
        });
        let tokens: HashSet<String> = futures_join(calls).await.into_iter().collect();
        assert_eq!(
            tokens,
            HashSet::from([format!("at-{}", expiry + 1)]),
            "every caller got the one new token"
        );
        assert_eq!(
            hub.refreshes.load(Ordering::SeqCst),
            expiry as usize,
            "one refresh per expiry"
        );
    }
    assert_eq!(hub.invalid_grants.load(Ordering::SeqCst), 0);
}

async fn futures_join<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_401_refreshes_once_and_a_dead_refresh_token_asks_for_authorization_again() {
    let (region, hub) = developer_hub(3600).await;
    let store = Arc::new(MemoryTokenStore::new());
    let oauth = ContentstackOAuth::new(client(), region, Arc::clone(&store));
    let installation = oauth.exchange("good-code", None, None).await.unwrap();
    let rejected = oauth.cma(&installation).await.unwrap();
    let (a, b) = tokio::join!(
        oauth.cma_after_unauthorized(&installation, &rejected),
        oauth.cma_after_unauthorized(&installation, &rejected)
    );
    assert_eq!(a.unwrap().headers["authorization"], "Bearer at-2");
    assert_eq!(
        b.unwrap().access_token.expose(),
        "at-2",
        "the second caller takes the first one's refresh"
    );
    assert_eq!(hub.refreshes.load(Ordering::SeqCst), 1);

    // Revoked at Contentstack: the refresh token no longer works.
    hub.live.lock().unwrap().clear();
    let current = oauth.cma(&installation).await.unwrap();
    let dead = oauth
        .cma_after_unauthorized(&installation, &current)
        .await
        .unwrap_err();
    assert_eq!(dead.kind(), OAuthErrorKind::NotAuthorized);
    assert!(
        !dead.message().contains("rt-") && !dead.message().contains("at-"),
        "{}",
        dead.message()
    );
    assert!(
        store.load(&installation).await.unwrap().is_some(),
        "a refused refresh token forgets nothing: the uninstall does"
    );
}

#[tokio::test]
async fn no_token_or_secret_reaches_debug_output() {
    let (region, _hub) = developer_hub(3600).await;
    let store = Arc::new(MemoryTokenStore::new());
    let oauth = ContentstackOAuth::new(client(), region, Arc::clone(&store));
    let installation = oauth.exchange("good-code", None, None).await.unwrap();
    let shown = format!(
        "{oauth:?} {:?} {store:?}",
        store.load(&installation).await.unwrap()
    );
    for secret in ["s3cret", "at-1", "rt-1", "good-code"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[tokio::test]
async fn an_uninstall_during_a_refresh_is_not_undone_by_it() {
    let (region, _hub) = developer_hub(100).await;
    let (clock, offset) = clock();
    let store = Arc::new(MemoryTokenStore::new());
    let oauth = ContentstackOAuth::new(client(), region, Arc::clone(&store)).with_clock(clock);
    let installation = oauth.exchange("good-code", None, None).await.unwrap();
    offset.store(100, Ordering::SeqCst);
    let refreshing = tokio::spawn({
        let (oauth, installation) = (oauth.clone(), installation.clone());
        async move { oauth.access_token(&installation).await }
    });
    // The hub takes 20 ms to answer a refresh: uninstalled meanwhile.
    tokio::time::sleep(Duration::from_millis(5)).await;
    oauth.forget(&installation).await.unwrap();
    let outcome = refreshing.await.unwrap();
    assert_eq!(outcome.unwrap_err().kind(), OAuthErrorKind::NotAuthorized);
    assert!(
        store.load(&installation).await.unwrap().is_none(),
        "the refresh that finished after the uninstall wrote nothing back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_with_a_short_life_is_refreshed_once_not_by_every_waiting_caller() {
    // Lifetime 1 s: the margin is half a second, so a fresh token is already within it for
    // most of its life.
    let (region, hub) = developer_hub(1).await;
    let store = Arc::new(MemoryTokenStore::new());
    let instances: Vec<_> = (0..2)
        .map(|_| ContentstackOAuth::new(client(), region.clone(), Arc::clone(&store)))
        .collect();
    let installation = instances[0]
        .exchange("good-code", None, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let calls = (0..30).map(|i| {
        let (oauth, installation) = (instances[i % 2].clone(), installation.clone());
        tokio::spawn(async move {
            oauth
                .access_token(&installation)
                .await
                .unwrap()
                .expose()
                .to_owned()
        })
    });
    let tokens: HashSet<String> = futures_join(calls).await.into_iter().collect();
    assert_eq!(tokens, HashSet::from(["at-2".to_owned()]));
    assert_eq!(hub.refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn send_calls_the_cma_and_once_more_with_a_refreshed_token_after_a_401() {
    let (region, hub) = developer_hub(3600).await;
    let oauth = ContentstackOAuth::new(client(), region, MemoryTokenStore::new());
    let installation = oauth.exchange("good-code", None, None).await.unwrap();
    let http = reqwest::Client::new();
    let get = |call: &countersign::contentstack::oauth::CmaCall| {
        http.get(format!("{}/content_types", call.base_url))
            .headers(call.headers.clone())
    };
    let answer = oauth.send(&installation, get).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(hub.refreshes.load(Ordering::SeqCst), 0);

    // The CMA refuses the stored token (as after a revocation): one refresh, the call again.
    hub.issued.fetch_add(1, Ordering::SeqCst);
    let answer = oauth.send(&installation, get).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(hub.refreshes.load(Ordering::SeqCst), 1);

    let down = oauth
        .send(&installation, |_| http.get("http://127.0.0.1:9/"))
        .await
        .unwrap_err();
    assert_eq!(down.kind(), OAuthErrorKind::CmaUnavailable);
    assert_eq!(down.kind().reason().code, "cma_unavailable");
}

#[cfg(feature = "testing")]
#[tokio::test]
async fn an_installation_event_names_its_installation_and_never_another_stack() {
    use countersign::contentstack::WebhookBody;
    use countersign::testing::TestKit;
    use countersign::{ContentstackWebhook, ContentstackWebhookLayer};
    use tower::ServiceExt as _;

    let kit = TestKit::new();
    let of = |target: serde_json::Value| {
        let body = WebhookBody::new("app_installation", "uninstall")
            .with_api_key(TestKit::STACK)
            .with_data(&serde_json::json!({"app_installation": {
                "app_uid": TestKit::APP_UID, "organization_uid": "org9", "target": target,
            }}));
        let request = kit.contentstack_webhook("/", &body);
        let app = Router::new().route(
            "/",
            post(|webhook: ContentstackWebhook| async move {
                format!("{:?}", Installation::of_event(&webhook))
            })
            .layer(ContentstackWebhookLayer::new(
                kit.webhook_verifier(),
                kit.contentstack_keys(),
            )),
        );
        async move {
            let answer = app.oneshot(request).await.unwrap();
            let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
                .await
                .unwrap();
            String::from_utf8(body.to_vec()).unwrap()
        }
    };
    assert_eq!(
        of(serde_json::json!({"type": "stack", "uid": TestKit::STACK})).await,
        format!(
            "{:?}",
            Some(Installation {
                organization_uid: "org9".into(),
                stack_api_key: Some(TestKit::STACK.into()),
            })
        )
    );
    assert_eq!(
        of(serde_json::json!({"type": "stack", "uid": "blt-another-stack"})).await,
        "None",
        "data that names another stack than the delivery's names nothing"
    );
    assert_eq!(
        of(serde_json::json!({"type": "organization", "uid": "org9"})).await,
        format!(
            "{:?}",
            Some(Installation {
                organization_uid: "org9".into(),
                stack_api_key: None,
            })
        )
    );
}

mod store_errors;
