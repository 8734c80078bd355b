//! What the layers count, read back through a debugging recorder: which secret, key and salt
//! matched, replay outcomes, key fetches (ok, failed, stale key served). The examples' scrape
//! of `/metrics` after real requests is in `tests/tests/it/examples_e2e/`.

#![cfg(all(feature = "metrics", feature = "well-known", feature = "testing"))]
#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::{get, post};
use countersign::contentful::{RequestVerifier, SigningSecret};
use countersign::contentstack::well_known::WellKnownKeys;
use countersign::contentstack::{KeySource, WebhookBody, WebhookVerifier};
use countersign::metrics::{
    CONTENTFUL_MATCHES, CONTENTSTACK_MATCHES, KEY_FETCHES, REPLAY, VERIFICATIONS,
};
use countersign::replay::{MemoryStore, ReplayGuardLayer};
use countersign::testing::TestKit;
use countersign::{ContentfulRequestLayer, ContentstackWebhookLayer};
use http::{Request, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::ServiceExt as _;

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        snapshotter
    })
}

/// The counter `name` with exactly these labels (0 when absent). A snapshot drains the
/// recorder's counters, so they are added up here.
fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    /// A series: its name, its sorted labels, its total.
    type Series = (String, Vec<(String, String)>, u64);
    static TOTALS: Mutex<Vec<Series>> = Mutex::new(Vec::new());
    let mut totals = TOTALS.lock().unwrap();
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let DebugValue::Counter(n) = value else {
            continue;
        };
        let key = key.key();
        let mut labels: Vec<_> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        match totals
            .iter_mut()
            .find(|(k, l, _)| k == key.name() && *l == labels)
        {
            Some(total) => total.2 += n,
            None => totals.push((key.name().to_owned(), labels, n)),
        }
    }
    let mut wanted: Vec<_> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wanted.sort();
    totals
        .iter()
        .find(|(k, l, _)| k == name && *l == wanted)
        .map_or(0, |(.., n)| *n)
}

async fn status(router: &Router, request: Request<Body>) -> StatusCode {
    router.clone().oneshot(request).await.unwrap().status()
}

// One test: the recorder is process-wide, and the counts are read as differences.
#[tokio::test]
async fn the_layers_count_matches_replays_and_key_fetches() {
    snapshotter();
    let kit = TestKit::new();

    // Which Contentful secret matched, during a rotation: the kit's secret listed second.
    let rotation = RequestVerifier::with_secrets([
        SigningSecret::generate().unwrap(),
        kit.contentful_secret(),
    ])
    .unwrap();
    let contentful = Router::new().route(
        "/c",
        post(|| async { "ok" }).layer(
            tower::ServiceBuilder::new()
                .layer(ContentfulRequestLayer::new(rotation))
                .layer(ReplayGuardLayer::new(MemoryStore::new(100))),
        ),
    );
    let event = || kit.contentful_app_event("/c", "ContentManagement.Entry.save", "{}", "k1");
    assert_eq!(status(&contentful, event()).await, StatusCode::OK);
    assert_eq!(status(&contentful, event()).await, StatusCode::OK);
    assert_eq!(counter(CONTENTFUL_MATCHES, &[("index", "1")]), 2);
    assert_eq!(counter(CONTENTFUL_MATCHES, &[("index", "0")]), 0);
    assert_eq!(counter(REPLAY, &[("outcome", "new")]), 1);
    assert_eq!(counter(REPLAY, &[("outcome", "duplicate")]), 1);

    // Contentstack: the HMAC secret, and RSA with its salt.
    let contentstack = Router::new().route(
        "/s",
        post(|| async { "ok" }).layer(ContentstackWebhookLayer::new(
            WebhookVerifier::new().with_hmac_secret(kit.contentstack_hmac_secret()),
            kit.contentstack_keys(),
        )),
    );
    let body = WebhookBody::new("entry", "publish");
    assert_eq!(
        status(&contentstack, kit.contentstack_hmac_webhook("/s", &body)).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&contentstack, kit.contentstack_webhook("/s", &body)).await,
        StatusCode::OK
    );
    assert_eq!(
        counter(
            CONTENTSTACK_MATCHES,
            &[("method", "hmac"), ("index", "0"), ("salt", "none")]
        ),
        1
    );
    assert_eq!(
        counter(
            CONTENTSTACK_MATCHES,
            &[("method", "rsa"), ("index", "0"), ("salt", "32")]
        ),
        1
    );
    let forged = TestKit::new().with_contentstack_hmac_secret(
        countersign::contentstack::HmacSecret::new("other").unwrap(),
    );
    assert_eq!(
        status(&contentstack, forged.contentstack_hmac_webhook("/s", &body)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        counter(
            VERIFICATIONS,
            &[
                ("provider", "contentstack"),
                ("outcome", "rejected"),
                ("reason", "signature_mismatch")
            ]
        ),
        1
    );

    // Key fetches: ok, then the endpoint fails and the cached key is served.
    let up = Arc::new(AtomicBool::new(true));
    let document = kit
        .contentstack_signing_key()
        .public_key()
        .to_public_keys_json();
    let endpoint = Router::new()
        .route(
            "/.well-known/public-keys.json",
            get(
                |State((up, document)): State<(Arc<AtomicBool>, String)>| async move {
                    if up.load(Ordering::SeqCst) {
                        (StatusCode::OK, document)
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, String::new())
                    }
                },
            ),
        )
        .with_state((Arc::clone(&up), document));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/public-keys.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, endpoint).await });
    let keys = WellKnownKeys::from_url(url)
        .unwrap()
        .with_min_refetch_interval(Duration::ZERO);
    let first = keys.keys().await.unwrap();
    assert_eq!(counter(KEY_FETCHES, &[("outcome", "ok")]), 1);
    up.store(false, Ordering::SeqCst);
    // A signature that did not verify with the cached key asks for a fresh one; the fetch
    // fails and the cached key goes on serving.
    assert!(keys.refresh(&first).await.is_none(), "no other key");
    assert_eq!(counter(KEY_FETCHES, &[("outcome", "failed")]), 1);
    assert_eq!(counter(KEY_FETCHES, &[("outcome", "stale_served")]), 1);
    assert!(Arc::ptr_eq(&keys.keys().await.unwrap(), &first));
}
