//! The attack catalogue, part two: a malicious tenant. An app is installed by strangers, and
//! each of them can make the provider sign requests for their own installation: a user of any
//! space that installed a Contentful app has the app frontend sign what they like, the admins
//! of a space choose its webhook secret, the owner of a stack its HMAC secret. Each attack here
//! holds a valid signature, goes through the real layers on a real server, and gets the exact
//! refusal (status and reason code) or outcome `docs/security.md` promises.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::common::*;
use axum::Router;
use axum::routing::{get, post};
use countersign::contentful::{
    Context, RequestKinds, RequestVerifier, SigningSecret, canonical_string,
};
use countersign::contentstack::session::{AppTokenLayer, SessionKey, Sessions};
use countersign::contentstack::{
    AppTokenVerifier, HmacSecret, SigningKey, StaticKeys, Tenancy, WebhookBody, WebhookVerifier,
    mint_app_token,
};
use countersign::replay::{MemoryStore, REPLAY_HEADER, ReplayGuardLayer};
use countersign::{ContentfulRequest, ContentfulRequestLayer, ContentstackWebhookLayer};
use hmac::Mac as _;
use serde_json::json;
use tower::ServiceBuilder;

const SPACE_A_SECRET: &str = "space-a-webhook-secret-0123456789abcdefghijklmnopqrstuvwxyzABCDE";
const SPACE_B_SECRET: &str = "space-b-webhook-secret-0123456789abcdefghijklmnopqrstuvwxyzABCDE";
const STACK_A_SECRET: &str = "stack-a-hmac-secret";

async fn post_signed(url: &str, headers: &[(String, String)], body: &str) -> reqwest::Response {
    let mut request = client().post(url).body(body.to_owned());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

async fn refusal(response: reqwest::Response) -> (u16, String) {
    let (status, body) = problem(response).await;
    (status, body["code"].as_str().unwrap().to_owned())
}

/// What a handled request answers: the space it acted for.
async fn handled(request: ContentfulRequest) -> String {
    format!("handled for {}", request.space_id().unwrap_or("no space"))
}

/// A Contentful app: events (and webhooks) on one route, the frontend's calls on another, one
/// replay store for both, and the app's secret beside space A's bound webhook secret.
async fn contentful_app() -> String {
    let verifier = RequestVerifier::new(SigningSecret::new(SECRET).unwrap())
        .with_space_webhook_secret("space-a", SigningSecret::new(SPACE_A_SECRET).unwrap())
        .with_space_webhook_secret("space-b", SigningSecret::new(SPACE_B_SECRET).unwrap());
    let replay = ReplayGuardLayer::new(MemoryStore::new(1_000));
    let events = ServiceBuilder::new()
        .layer(ContentfulRequestLayer::new(
            verifier.clone().with_kinds(RequestKinds::EVENTS),
        ))
        .layer(replay.clone());
    let frontend = ServiceBuilder::new()
        .layer(ContentfulRequestLayer::new(
            verifier.with_kinds(RequestKinds::FRONTEND),
        ))
        .layer(replay);
    let app = Router::new()
        .route("/events", post(handled).layer(events))
        .route("/frontend", post(handled).layer(frontend));
    format!("http://{}", serve(app).await)
}

/// The headers the toolkit's `signRequest` gives `headers` (it refuses nothing), as a user
/// gets them from `appSignedRequest`.
fn toolkit_signed(target: &str, headers: &[(&str, &str)], body: &str, at_ms: u64) -> String {
    let canonical = canonical_string("POST", target, headers, body.as_bytes(), at_ms);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&canonical);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn a_frontend_signature_re_split_for_another_space_user_and_time_is_refused() {
    let base = contentful_app().await;
    let t = now_ms();
    let later = t + 20_000;
    // The user of space `mine` asks the frontend to sign a header of their choice; Contentful
    // adds the space and the user.
    let chosen = format!(
        "a;x-contentful-space-id:victim;x-contentful-timestamp:{later};x-contentful-user-id:u2"
    );
    let signed = [
        ("x-contentful-so", chosen.as_str()),
        ("x-contentful-space-id", "mine"),
        ("x-contentful-user-id", "me"),
    ];
    let signature = toolkit_signed("/frontend", &signed, "{}", t);
    // The same canonical string, read as a request of space `victim`, user `u2`, 20 s later:
    // what the toolkit verifies.
    let rest =
        format!("u2;x-contentful-space-id:mine;x-contentful-timestamp:{t};x-contentful-user-id:me");
    let read_as = [
        ("x-contentful-so", "a"),
        ("x-contentful-space-id", "victim"),
        ("x-contentful-user-id", rest.as_str()),
    ];
    assert_eq!(
        canonical_string("POST", "/frontend", &signed, b"{}", t),
        canonical_string("POST", "/frontend", &read_as, b"{}", later)
    );
    let forged = vec![
        ("x-contentful-so".to_owned(), "a".to_owned()),
        ("x-contentful-space-id".to_owned(), "victim".to_owned()),
        ("x-contentful-timestamp".to_owned(), later.to_string()),
        ("x-contentful-user-id".to_owned(), rest),
        (
            "x-contentful-signed-headers".to_owned(),
            "x-contentful-signed-headers,x-contentful-so,x-contentful-space-id,x-contentful-timestamp,x-contentful-user-id".to_owned(),
        ),
        ("x-contentful-signature".to_owned(), signature),
    ];
    let answer = post_signed(&format!("{base}/frontend"), &forged, "{}").await;
    assert_eq!(
        refusal(answer).await,
        (401, "signed_header_ambiguous".to_owned()),
        "a re-split frontend signature"
    );
}

#[tokio::test]
async fn an_event_route_refuses_what_a_user_had_signed() {
    let base = contentful_app().await;
    // Any user of any installation can have the frontend sign an uninstall "event".
    let context = Context {
        space_id: Some("space-b".into()),
        user_id: Some("mallory".into()),
        ..Context::default()
    };
    let own = [(
        "x-contentful-topic",
        "ContentManagement.AppInstallation.delete",
    )];
    let headers = contentful_headers_with(SECRET, "POST", "/events", b"{}", &own, &context);
    let mut with_own = headers.clone();
    with_own.push((own[0].0.to_owned(), own[0].1.to_owned()));
    assert_eq!(
        refusal(post_signed(&format!("{base}/events"), &with_own, "{}").await).await,
        (403, "request_kind_not_allowed".to_owned()),
        "a user-signed event"
    );
    // The same signature is what the frontend route is for.
    let frontend = contentful_headers(SECRET, "POST", "/frontend", b"{}", &context);
    let answer = post_signed(&format!("{base}/frontend"), &frontend, "{}").await;
    assert_eq!(answer.text().await.unwrap(), "handled for space-b");
}

#[tokio::test]
async fn a_tenant_cannot_make_another_spaces_delivery_a_duplicate() {
    let base = contentful_app().await;
    // Space A's admins choose its webhook secret, and with it sign any idempotency key...
    let key = [("x-contentful-idempotency-key", "the-key-space-b-will-get")];
    let space = |id: &str| Context {
        space_id: Some(id.into()),
        ..Context::default()
    };
    let mut own = contentful_headers_with(
        SPACE_A_SECRET,
        "POST",
        "/events",
        b"{}",
        &key,
        &space("space-a"),
    );
    own.push((key[0].0.to_owned(), key[0].1.to_owned()));
    let answer = post_signed(&format!("{base}/events"), &own, "{}").await;
    assert_eq!(answer.text().await.unwrap(), "handled for space-a");
    // ... but space B's genuine webhook with that key is its own, and is handled.
    let mut genuine = contentful_headers_with(
        SPACE_B_SECRET,
        "POST",
        "/events",
        b"{}",
        &key,
        &space("space-b"),
    );
    genuine.push((key[0].0.to_owned(), key[0].1.to_owned()));
    let answer = post_signed(&format!("{base}/events"), &genuine, "{}").await;
    assert!(
        answer.headers().get(REPLAY_HEADER).is_none(),
        "not a duplicate"
    );
    assert_eq!(answer.text().await.unwrap(), "handled for space-b");
}

#[tokio::test]
async fn a_spaces_webhook_secret_verifies_only_that_spaces_requests() {
    let base = contentful_app().await;
    let context = Context {
        space_id: Some("space-b".into()),
        ..Context::default()
    };
    let headers = contentful_headers(SPACE_A_SECRET, "POST", "/events", b"{}", &context);
    assert_eq!(
        refusal(post_signed(&format!("{base}/events"), &headers, "{}").await).await,
        (401, "signature_mismatch".to_owned()),
        "space A's secret signing for space B"
    );
    // A CRN is a space too.
    let crn = Context {
        crn: Some("crn:contentful:::content:spaces/space-b/environments/master".into()),
        ..Context::default()
    };
    let headers = contentful_headers(SPACE_A_SECRET, "POST", "/events", b"{}", &crn);
    assert_eq!(
        refusal(post_signed(&format!("{base}/events"), &headers, "{}").await).await,
        (401, "signature_mismatch".to_owned()),
        "space A's secret signing a CRN of space B"
    );
    // Its own space id beside another space's CRN: two tenants in one request.
    let both = Context {
        space_id: Some("space-a".into()),
        crn: Some("crn:contentful:::content:spaces/space-b/environments/master".into()),
        ..Context::default()
    };
    let headers = contentful_headers(SPACE_A_SECRET, "POST", "/events", b"{}", &both);
    assert_eq!(
        refusal(post_signed(&format!("{base}/events"), &headers, "{}").await).await,
        (401, "context_conflict".to_owned()),
        "space A's id with a CRN of space B"
    );
    let own = Context {
        space_id: Some("space-a".into()),
        ..Context::default()
    };
    let headers = contentful_headers(SPACE_A_SECRET, "POST", "/events", b"{}", &own);
    let answer = post_signed(&format!("{base}/events"), &headers, "{}").await;
    assert_eq!(answer.text().await.unwrap(), "handled for space-a");
}

/// A Contentstack app: RSA and HMAC webhooks, stack A's HMAC secret bound to it.
fn contentstack_route(app_uid: &str, store: Arc<MemoryStore>) -> Router {
    let verifier = WebhookVerifier::new()
        .with_stack_hmac_secret("blt-a", HmacSecret::new(STACK_A_SECRET).unwrap());
    let layer = ContentstackWebhookLayer::new(verifier, StaticKeys::parse(PUBLIC_A).unwrap())
        .with_tenancy(Tenancy::new().with_app_uid(app_uid));
    Router::new().route(
        "/webhooks",
        post(|| async { "handled" }).layer(
            ServiceBuilder::new()
                .layer(layer)
                .layer(ReplayGuardLayer::new(store)),
        ),
    )
}

fn hmac_delivery(stack: &str, secret: &str) -> (String, Vec<(String, String)>) {
    let now = SystemTime::now();
    let body = WebhookBody::new("entry", "publish")
        .with_api_key(stack)
        .with_data(&json!({"entry": {"uid": "e1"}}))
        .to_json(now);
    let signature = HmacSecret::new(secret).unwrap().sign(body.as_bytes(), now);
    let headers = vec![("x-contentstack-hmac-signature".to_owned(), signature)];
    (body, headers)
}

#[tokio::test]
async fn a_stacks_hmac_secret_verifies_only_that_stacks_deliveries() {
    let store = Arc::new(MemoryStore::new(1_000));
    let base = format!("http://{}", serve(contentstack_route("app1", store)).await);
    let url = format!("{base}/webhooks");
    let (body, headers) = hmac_delivery("blt-b", STACK_A_SECRET);
    assert_eq!(
        refusal(post_signed(&url, &headers, &body).await).await,
        (401, "signature_mismatch".to_owned()),
        "stack A's secret signing for stack B"
    );
    let (body, headers) = hmac_delivery("blt-a", STACK_A_SECRET);
    assert_eq!(
        post_signed(&url, &headers, &body)
            .await
            .text()
            .await
            .unwrap(),
        "handled"
    );
}

#[tokio::test]
async fn two_apps_on_one_store_never_share_a_delivery() {
    // One store (as one Redis would be) behind two apps' routes.
    let store = Arc::new(MemoryStore::new(1_000));
    let app1 = format!(
        "http://{}",
        serve(contentstack_route("app1", Arc::clone(&store))).await
    );
    let app2 = format!("http://{}", serve(contentstack_route("app2", store)).await);
    // The same event, signed once by Contentstack, delivered to both apps.
    let body = webhook_body(Duration::ZERO, r#"{"entry":{"uid":"e1"}}"#);
    let signature = rsa_signature(PRIVATE_A, &body);
    let headers = vec![("x-contentstack-request-signature".to_owned(), signature)];
    for base in [&app1, &app2] {
        let answer = post_signed(&format!("{base}/webhooks"), &headers, &body).await;
        assert!(answer.headers().get(REPLAY_HEADER).is_none(), "{base}");
        assert_eq!(answer.text().await.unwrap(), "handled");
    }
    // Each app still knows its own.
    let again = post_signed(&format!("{app2}/webhooks"), &headers, &body).await;
    assert_eq!(again.headers()[REPLAY_HEADER], "duplicate");
}

#[tokio::test]
async fn one_tenants_flood_is_refused_while_the_others_are_served() {
    // Forty entries: no tenant may hold more than an eighth, five.
    let store = Arc::new(MemoryStore::new(40));
    let base = format!("http://{}", serve(contentstack_route("app1", store)).await);
    let url = format!("{base}/webhooks");
    let deliver = |stack: &str, n: usize| {
        let body = WebhookBody::new("entry", "publish")
            .with_api_key(stack)
            .with_data(&json!({ "n": n }))
            .to_json(SystemTime::now());
        let signature = rsa_signature(PRIVATE_A, &body);
        (
            body,
            vec![("x-contentstack-request-signature".to_owned(), signature)],
        )
    };
    for n in 0..5 {
        let (body, headers) = deliver("blt-flood", n);
        assert_eq!(post_signed(&url, &headers, &body).await.status(), 200);
    }
    let (body, headers) = deliver("blt-flood", 5);
    let answer = post_signed(&url, &headers, &body).await;
    assert!(answer.headers().contains_key("retry-after"));
    assert_eq!(
        refusal(answer).await,
        (503, "replay_tenant_full".to_owned()),
        "a tenant beyond its share"
    );
    for n in 0..5 {
        let (body, headers) = deliver("blt-quiet", n);
        assert_eq!(
            post_signed(&url, &headers, &body).await.status(),
            200,
            "another tenant, delivery {n}"
        );
    }
}

/// A server whose UI location spends each app-token of app `app1` in a store of `capacity`
/// entries; returns a function that loads it with a token of `claims` (over the defaults).
async fn ui_spending_tokens(
    capacity: usize,
) -> impl Fn(serde_json::Value) -> reqwest::RequestBuilder {
    let layer = AppTokenLayer::new(
        AppTokenVerifier::new().with_app_uid("app1"),
        StaticKeys::parse(PUBLIC_A).unwrap(),
        Sessions::new([SessionKey::new([9u8; 32]).unwrap()]),
    )
    .with_single_use(MemoryStore::new(capacity));
    let app = Router::new().route("/ui", get(|| async { "page" }).layer(layer));
    let base = format!("http://{}", serve(app).await);
    let key = SigningKey::from_pem(PRIVATE_A).unwrap();
    move |extra: serde_json::Value| {
        let mut claims = json!({
            "app_uid": "app1", "installation_uid": "i", "organization_uid": "o",
            "user_uid": "u", "stack_api_key": "blt-a",
        });
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        let token =
            mint_app_token(&key, &claims, SystemTime::now(), Duration::from_secs(300)).unwrap();
        client().get(format!("{base}/ui?app-token={token}"))
    }
}

#[tokio::test]
async fn a_full_store_of_spent_app_tokens_answers_503_not_reused() {
    // Two entries, one per stack.
    let load = ui_spending_tokens(2).await;
    let page =
        |stack: &str, user: &str| load(json!({"stack_api_key": stack, "user_uid": user})).send();
    assert_eq!(page("blt-a", "u1").await.unwrap().status(), 200);
    let full = page("blt-a", "u2").await.unwrap();
    assert_eq!(
        refusal(full).await,
        (503, "store_full".to_owned()),
        "a new token is not a reused one"
    );
    assert_eq!(
        page("blt-b", "u3").await.unwrap().status(),
        200,
        "another stack is served"
    );
}

#[tokio::test]
async fn an_app_token_with_a_huge_exp_is_handled_without_a_panic() {
    let load = ui_spending_tokens(10).await;
    let page = load(json!({"exp": u64::MAX})).build().unwrap();
    let again = page.try_clone().unwrap();
    // Signed by the key, so it opens a session; the server is still there to say so.
    assert_eq!(client().execute(page).await.unwrap().status(), 200);
    let again = client().execute(again).await.unwrap();
    assert_eq!(refusal(again).await, (401, "app_token_reused".to_owned()));
}
