//! The well-known key source against a real HTTP server on loopback that serves, fails,
//! stalls, answers garbage and rotates keys.

#![cfg(feature = "well-known")]
#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use countersign::contentstack::well_known::WellKnownKeys;
use countersign::contentstack::{KeySet, KeySource, SaltLength, SigningKey, WebhookVerifier};
use http::{HeaderMap, HeaderValue};

const KEY_A: &str =
    include_str!("../../../countersign-core/tests/data/keys/contentstack-a.public-keys.json");
const KEY_B: &str =
    include_str!("../../../countersign-core/tests/data/keys/contentstack-b.public-keys.json");
const PRIVATE_A: &str =
    include_str!("../../../countersign-core/tests/data/keys/contentstack-a.private.pem");
const PRIVATE_B: &str =
    include_str!("../../../countersign-core/tests/data/keys/contentstack-b.private.pem");

#[derive(Clone, Copy, Debug)]
enum Mode {
    Serve(&'static str),
    Fail,
    Garbage,
    Stall,
}

#[derive(Clone)]
struct Endpoint {
    mode: Arc<Mutex<Mode>>,
    hits: Arc<AtomicUsize>,
    delay: Arc<Mutex<Duration>>,
}

impl Endpoint {
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve_keys(State(endpoint): State<Endpoint>) -> (StatusCode, String) {
    endpoint.hits.fetch_add(1, Ordering::SeqCst);
    let delay = *endpoint.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let mode = *endpoint.mode.lock().unwrap();
    match mode {
        Mode::Serve(document) => (StatusCode::OK, document.to_owned()),
        Mode::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "down".to_owned()),
        Mode::Garbage => (StatusCode::OK, "<html>maintenance</html>".to_owned()),
        Mode::Stall => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            (StatusCode::OK, String::new())
        }
    }
}

/// Starts the endpoint on a free loopback port; returns it and the key URL.
async fn endpoint(mode: Mode) -> (Endpoint, String) {
    let endpoint = Endpoint {
        mode: Arc::new(Mutex::new(mode)),
        hits: Arc::new(AtomicUsize::new(0)),
        delay: Arc::new(Mutex::new(Duration::ZERO)),
    };
    let app = Router::new()
        .route("/.well-known/public-keys.json", get(serve_keys))
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (
        endpoint,
        format!("http://{addr}/.well-known/public-keys.json"),
    )
}

fn key_set(document: &str) -> KeySet {
    KeySet::parse(document).unwrap()
}

#[tokio::test]
async fn the_key_is_fetched_once_and_cached() {
    let (endpoint, url) = endpoint(Mode::Serve(KEY_A)).await;
    let keys = WellKnownKeys::from_url(url).unwrap();
    assert_eq!(*keys.keys().await.unwrap(), key_set(KEY_A));
    assert_eq!(*keys.keys().await.unwrap(), key_set(KEY_A));
    assert_eq!(endpoint.hits(), 1);
}

#[tokio::test]
async fn a_region_base_url_finds_the_well_known_path() {
    let (endpoint, url) = endpoint(Mode::Serve(KEY_A)).await;
    let base = url.trim_end_matches("/.well-known/public-keys.json");
    let keys = WellKnownKeys::for_region(&base.parse().unwrap());
    assert_eq!(*keys.keys().await.unwrap(), key_set(KEY_A));
    assert_eq!(endpoint.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_cause_one_fetch() {
    let (endpoint, url) = endpoint(Mode::Serve(KEY_A)).await;
    *endpoint.delay.lock().unwrap() = Duration::from_millis(300);
    let keys = WellKnownKeys::from_url(url).unwrap();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let keys = keys.clone();
            tokio::spawn(async move { keys.keys().await })
        })
        .collect();
    for task in tasks {
        assert_eq!(*task.await.unwrap().unwrap(), key_set(KEY_A));
    }
    assert_eq!(endpoint.hits(), 1);
}

#[tokio::test]
async fn a_stale_key_keeps_serving_while_it_is_refreshed_in_the_background() {
    let (endpoint, url) = endpoint(Mode::Serve(KEY_A)).await;
    let keys = WellKnownKeys::from_url(url)
        .unwrap()
        .with_refresh_interval(Duration::from_millis(100));
    keys.prefetch().await.unwrap();
    endpoint.set(Mode::Serve(KEY_B));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Stale: the old key answers at once, and a refresh starts.
    assert_eq!(*keys.keys().await.unwrap(), key_set(KEY_A));
    let mut rotated = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if keys.cached().is_some_and(|k| *k == key_set(KEY_B)) {
            rotated = true;
            break;
        }
    }
    assert!(rotated, "the background refresh picked up the new key");
    assert_eq!(endpoint.hits(), 2);
}

#[tokio::test]
async fn a_failed_signature_refetches_at_most_once_per_interval() {
    let (endpoint, url) = endpoint(Mode::Serve(KEY_A)).await;
    let keys = WellKnownKeys::from_url(url)
        .unwrap()
        .with_min_refetch_interval(Duration::from_secs(1));
    let first = keys.keys().await.unwrap();
    endpoint.set(Mode::Serve(KEY_B));
    // Right after the first fetch: no refetch yet.
    assert!(keys.refresh(&first).await.is_none());
    assert_eq!(endpoint.hits(), 1);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let rotated = keys.refresh(&first).await.unwrap();
    assert_eq!(*rotated, key_set(KEY_B));
    assert_eq!(endpoint.hits(), 2);
    // The new key serves from now on; asking again with the old one hands it over unfetched.
    assert_eq!(*keys.refresh(&first).await.unwrap(), key_set(KEY_B));
    assert_eq!(*keys.keys().await.unwrap(), key_set(KEY_B));
    assert_eq!(endpoint.hits(), 2);
}

#[tokio::test]
async fn a_rotation_is_picked_up_by_verification() {
    let (endpoint, url) = endpoint(Mode::Serve(KEY_A)).await;
    let keys = WellKnownKeys::from_url(url)
        .unwrap()
        .with_min_refetch_interval(Duration::ZERO);
    keys.prefetch().await.unwrap();
    endpoint.set(Mode::Serve(KEY_B));

    // Contentstack now signs with B.
    let body = br#"{"triggered_at":"2030-01-01T00:00:00.000Z","event":"publish"}"#;
    let signature = SigningKey::from_pem(PRIVATE_B)
        .unwrap()
        .sign_webhook(body, SaltLength::Digest)
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-contentstack-request-signature",
        HeaderValue::from_str(&signature).unwrap(),
    );
    let verifier = WebhookVerifier::new().with_tolerance(Duration::from_secs(u64::from(u32::MAX)));
    let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000);

    let cached = keys.keys().await.unwrap();
    let first = verifier
        .diagnose()
        .verify_with_keys(&headers, body, Some(&cached), now);
    assert_eq!(first.unwrap_err().kind().code(), "signature_mismatch");
    let fresh = keys.refresh(&cached).await.unwrap();
    assert!(
        verifier
            .diagnose()
            .verify_with_keys(&headers, body, Some(&fresh), now)
            .is_ok()
    );

    // And a signature from the old key no longer verifies.
    let old = SigningKey::from_pem(PRIVATE_A)
        .unwrap()
        .sign_webhook(body, SaltLength::Digest)
        .unwrap();
    headers.insert(
        "x-contentstack-request-signature",
        HeaderValue::from_str(&old).unwrap(),
    );
    assert!(
        verifier
            .diagnose()
            .verify_with_keys(&headers, body, Some(&fresh), now)
            .is_err()
    );
}

#[tokio::test]
async fn the_last_good_key_serves_while_the_endpoint_is_down_or_answers_garbage() {
    let (endpoint, url) = endpoint(Mode::Serve(KEY_A)).await;
    let keys = WellKnownKeys::from_url(url)
        .unwrap()
        .with_min_refetch_interval(Duration::ZERO)
        .with_refresh_interval(Duration::ZERO);
    let first = keys.prefetch().await.unwrap();
    for mode in [Mode::Fail, Mode::Garbage] {
        endpoint.set(mode);
        assert!(keys.refresh(&first).await.is_none(), "{mode:?}");
        assert_eq!(*keys.keys().await.unwrap(), key_set(KEY_A), "{mode:?}");
    }
    assert!(format!("{keys:?}").contains("last_error"));
}

#[tokio::test]
async fn no_key_at_all_is_key_unavailable() {
    for mode in [Mode::Fail, Mode::Garbage] {
        let (_endpoint, url) = endpoint(mode).await;
        let keys = WellKnownKeys::from_url(url).unwrap();
        let err = keys.keys().await.unwrap_err();
        assert!(err.message().contains("failed"), "{mode:?}: {err}");
    }
    // Nothing listens there.
    let keys = WellKnownKeys::from_url("http://127.0.0.1:9/.well-known/public-keys.json").unwrap();
    assert!(keys.keys().await.unwrap_err().message().contains("connect"));
}

#[tokio::test]
async fn a_stalled_endpoint_is_bounded_by_the_timeout() {
    let (_endpoint, url) = endpoint(Mode::Stall).await;
    let keys = WellKnownKeys::from_url(url)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let outcome = tokio::time::timeout(Duration::from_secs(10), keys.keys()).await;
    let err = outcome.expect("the fetch gave up by itself").unwrap_err();
    assert!(err.message().contains("in time"), "{err}");
}

#[tokio::test]
async fn after_a_failure_with_no_key_the_next_request_does_not_refetch_at_once() {
    let (endpoint, url) = endpoint(Mode::Fail).await;
    let keys = WellKnownKeys::from_url(url).unwrap();
    assert!(keys.keys().await.is_err());
    assert!(keys.keys().await.is_err());
    assert_eq!(endpoint.hits(), 1);
    endpoint.set(Mode::Serve(KEY_A));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(*keys.keys().await.unwrap(), key_set(KEY_A));
    assert_eq!(endpoint.hits(), 2);
}

#[test]
fn a_key_url_must_be_http() {
    assert!(WellKnownKeys::from_url("ftp://example.com/keys.json").is_err());
    assert!(WellKnownKeys::from_url("not a url").is_err());
}

#[tokio::test]
async fn keys_come_over_https_only_and_a_redirect_never_downgrades() {
    // Plain http elsewhere than this machine: refused when configured.
    for url in [
        "http://keys.example.com/.well-known/public-keys.json",
        "http://192.0.2.1/keys.json",
        "http://localhost.evil.example/keys.json",
        "ftp://127.0.0.1/keys.json",
    ] {
        let err = WellKnownKeys::from_url(url).unwrap_err();
        assert_eq!(
            err.kind(),
            countersign::ConfigErrorKind::InvalidRegion,
            "{url}"
        );
    }
    // A loopback key server that redirects to plain http elsewhere: not followed (it used to
    // be: the key would come from whoever answers there).
    let app = Router::new().route(
        "/.well-known/public-keys.json",
        get(|| async {
            (
                StatusCode::FOUND,
                [(
                    http::header::LOCATION,
                    "http://192.0.2.1/.well-known/public-keys.json",
                )],
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let keys =
        WellKnownKeys::from_url(format!("http://{addr}/.well-known/public-keys.json")).unwrap();
    let err = keys.keys().await.unwrap_err();
    assert!(err.message().contains("redirect away from https"), "{err}");
}

#[test]
fn a_root_certificate_must_be_a_pem_certificate() {
    let keys =
        || WellKnownKeys::from_url("https://keys.example/.well-known/public-keys.json").unwrap();
    assert!(keys().with_root_certificate("not a certificate").is_err());
    assert!(
        keys().with_root_certificate(PRIVATE_A).is_err(),
        "a key is not a certificate"
    );
}
