//! AWS Lambda: the test kit's signed requests as events of each kind
//! ([`LambdaEvent`], in the documented shapes), converted by `lambda_http` itself and run
//! through the router behind `LambdaTargetLayer`: each verifies; a tampered one (another path,
//! another stage, a reordered query) is refused for its signature; a query the event lost is
//! refused with `lambda_query_lost`, never as a signature mismatch.

use axum::Router;
use axum::response::IntoResponse as _;
use axum::routing::post;
use countersign::ContentfulRequestLayer;
use countersign::lambda::LambdaTargetLayer;
use countersign::testing::TestKit;
use countersign::testing::lambda::LambdaEvent;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use tower_layer::Layer as _;

const BODY: &str = r#"{"sys":{"id":"entry-1"}}"#;

/// The event of an app event Contentful sent to `target`, as `kind` carries it.
async fn event(kind: &LambdaEvent, target: &str) -> Value {
    let sent = TestKit::new().contentful_app_event(target, "Entry.publish", BODY, "key-1");
    kind.event(sent).await
}

/// `event` with the value at `pointer` replaced: what a tampering relay changed.
fn with(mut event: Value, pointer: &str, value: &str) -> Value {
    *event.pointer_mut(pointer).unwrap() = json!(value);
    event
}

/// The router of a function served under `prefix`, behind the layer: its status and reason.
async fn run(event: &Value, prefix: Option<&str>) -> (u16, String) {
    let mut verifier = TestKit::new().contentful_verifier();
    let mut layer = LambdaTargetLayer::new();
    if let Some(prefix) = prefix {
        verifier = verifier.with_path_prefix(prefix).unwrap();
        layer = layer.with_prefix(prefix).unwrap();
    }
    let verified = post(|| async { "ok" }).layer(ContentfulRequestLayer::new(verifier));
    let router = Router::new()
        .route("/contentful/events", verified.clone())
        .route("/contentful/other", verified)
        .route("/webhooks/contentstack", post(|| async { "routed" }));
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let answer = layer.layer(router).oneshot(request).await.unwrap();
    let status = answer.status().as_u16();
    let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
        .await
        .unwrap();
    let code = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    (status, code)
}

#[tokio::test]
async fn every_event_kind_verifies_for_the_target_its_sender_signed() {
    let cases = [
        // REST API, an execute-api host: requestContext.path has the stage, path has not.
        (
            "v1 execute-api",
            LambdaEvent::rest_api("prod"),
            "/prod/contentful/events",
            Some("/prod"),
        ),
        (
            "v1 execute-api, another stage",
            LambdaEvent::rest_api("test"),
            "/test/contentful/events",
            Some("/test"),
        ),
        // REST API, a custom domain with the base path `api`.
        (
            "v1 custom domain",
            LambdaEvent::rest_api_custom_domain("/api", "prod"),
            "/api/contentful/events",
            Some("/api"),
        ),
        (
            "v2 $default",
            LambdaEvent::http_api("$default"),
            "/contentful/events?x=1&a=%2F",
            None,
        ),
        (
            "v2 named stage",
            LambdaEvent::http_api("prod"),
            "/prod/contentful/events?b=2&a=1",
            Some("/prod"),
        ),
        (
            "v2 base64 body",
            LambdaEvent::http_api("$default").with_base64_body(),
            "/contentful/events",
            None,
        ),
        (
            "Function URL",
            LambdaEvent::function_url(),
            "/contentful/events?k=v",
            None,
        ),
        (
            "Function URL, no query",
            LambdaEvent::function_url(),
            "/contentful/events",
            None,
        ),
        ("ALB", LambdaEvent::alb(), "/contentful/events", None),
        (
            "ALB under a prefix",
            LambdaEvent::alb(),
            "/hooks/contentful/events",
            Some("/hooks"),
        ),
    ];
    for (name, kind, target, prefix) in cases {
        let event = event(&kind, target).await;
        assert_eq!(run(&event, prefix).await, (200, "ok".to_owned()), "{name}");
    }
}

#[tokio::test]
async fn a_tampered_event_is_refused_for_its_signature_and_a_lost_query_for_what_it_is() {
    let mismatch = (401, "signature_mismatch".to_owned());
    let lost = (400, "lambda_query_lost".to_owned());
    let v2 = LambdaEvent::http_api("$default");
    let v1 = LambdaEvent::rest_api("prod");
    let cases = [
        (
            "v2, another path",
            with(
                event(&v2, "/contentful/events").await,
                "/rawPath",
                "/contentful/other",
            ),
            None,
            mismatch.clone(),
        ),
        (
            "v2, a reordered query",
            with(
                event(&v2, "/contentful/events?b=2&a=1").await,
                "/rawQueryString",
                "a=1&b=2",
            ),
            None,
            mismatch.clone(),
        ),
        (
            "v2, another stage",
            with(
                event(&LambdaEvent::http_api("prod"), "/prod/contentful/events").await,
                "/rawPath",
                "/test/contentful/events",
            ),
            Some("/test"),
            mismatch.clone(),
        ),
        (
            "v1, another stage",
            with(
                event(&v1, "/prod/contentful/events").await,
                "/requestContext/path",
                "/test/contentful/events",
            ),
            Some("/test"),
            mismatch.clone(),
        ),
        (
            "v1, signed without the stage",
            with(
                event(&v1, "/contentful/events").await,
                "/requestContext/path",
                "/prod/contentful/events",
            ),
            Some("/prod"),
            mismatch,
        ),
        (
            "v1 with a query",
            event(&v1, "/prod/contentful/events?x=1").await,
            Some("/prod"),
            lost.clone(),
        ),
        (
            "a target outside the prefix",
            event(&v2, "/contentful/events").await,
            Some("/prod"),
            (404, "lambda_prefix_missing".to_owned()),
        ),
        (
            "a `#` in the path",
            with(
                event(&v2, "/contentful/events").await,
                "/rawPath",
                "/contentful/events#x",
            ),
            None,
            (400, "lambda_target_invalid".to_owned()),
        ),
        // An HTTP API decodes the path: what was `%20` is a space, no request target.
        (
            "v2, a path its API decoded",
            event(&v2, "/contentful/events%20x").await,
            None,
            (400, "lambda_target_invalid".to_owned()),
        ),
        (
            "ALB with a query",
            event(&LambdaEvent::alb(), "/contentful/events?x=1").await,
            None,
            lost,
        ),
    ];
    for (name, event, prefix, expected) in cases {
        assert_eq!(run(&event, prefix).await, expected, "{name}");
    }
}

#[tokio::test]
async fn a_request_no_contentful_signature_covers_is_routed_whatever_its_query() {
    // A Contentstack webhook behind an ALB with a query: Contentstack signs the body alone.
    let kit = TestKit::new();
    let body = countersign::contentstack::WebhookBody::new("entry", "publish")
        .with_api_key(TestKit::STACK);
    let sent = kit.contentstack_webhook("/webhooks/contentstack?token=1", &body);
    let event = LambdaEvent::alb().event(sent).await;
    assert_eq!(run(&event, None).await, (200, "routed".to_owned()));
}

#[tokio::test]
async fn the_kits_events_carry_what_each_kind_keeps() {
    let target = "/prod/contentful/events?b=2&a=%2F+x";
    let v1 = event(&LambdaEvent::rest_api("prod"), target).await;
    assert_eq!(v1["path"], "/contentful/events");
    assert_eq!(v1["requestContext"]["path"], "/prod/contentful/events");
    assert_eq!(
        v1["multiValueQueryStringParameters"],
        json!({"b": ["2"], "a": ["/ x"]})
    );
    let v2 = event(&LambdaEvent::http_api("prod"), target).await;
    assert_eq!(v2["rawPath"], "/prod/contentful/events");
    assert_eq!(v2["rawQueryString"], "b=2&a=%2F+x");
    let alb = event(&LambdaEvent::alb(), target).await;
    assert_eq!(
        alb["queryStringParameters"],
        json!({"b": "2", "a": "%2F+x"})
    );
    let binary = LambdaEvent::function_url()
        .with_base64_body()
        .event(TestKit::new().contentful_app_event("/e", "Entry.publish", BODY, "k"))
        .await;
    assert_eq!(binary["isBase64Encoded"], true);
    assert_ne!(binary["body"], BODY);
}

#[tokio::test]
async fn a_refusal_goes_through_the_layers_own_answer() {
    // A check layer like the others: `on_rejection` answers, the rejection is in the answer.
    let layer = LambdaTargetLayer::new().on_rejection(|rejection| {
        (http::StatusCode::IM_A_TEAPOT, rejection.code().to_owned()).into_response()
    });
    let event = event(
        &LambdaEvent::rest_api("prod"),
        "/prod/contentful/events?x=1",
    )
    .await;
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let answer = layer.layer(Router::new()).oneshot(request).await.unwrap();
    assert_eq!(answer.status(), 418);
    assert_eq!(
        answer
            .extensions()
            .get::<countersign::Rejection>()
            .map(countersign::Rejection::code),
        Some("lambda_query_lost")
    );
}
