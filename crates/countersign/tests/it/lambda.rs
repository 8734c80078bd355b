//! AWS Lambda: events of each kind, in the documented shapes, signed for the path and query
//! their sender saw, converted by `lambda_http` itself and run through the router behind
//! `LambdaTargetLayer`: each verifies; a tampered one (another path, another stage, a
//! reordered query) is refused for its signature; a query the event lost is refused with
//! `lambda_query_lost`, never as a signature mismatch.

use std::time::SystemTime;

use axum::Router;
use axum::routing::post;
use base64::Engine as _;
use countersign::ContentfulRequestLayer;
use countersign::contentful::{self, Context, RequestToSign, RequestVerifier, SigningSecret};
use countersign::lambda::LambdaTargetLayer;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use tower_layer::Layer as _;

const SECRET: &str = "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll";
const BODY: &str = r#"{"sys":{"id":"entry-1"}}"#;

/// The headers Contentful adds for a `POST` of `BODY` to `target`, as the event carries them.
fn signed_headers(target: &str) -> serde_json::Map<String, Value> {
    let request = RequestToSign::new(http::Method::POST, target)
        .with_header("content-type", "application/json")
        .with_body(BODY.as_bytes());
    let context = Context {
        space_id: Some("space-1".into()),
        ..Context::default()
    };
    let signed = contentful::sign(
        &SigningSecret::new(SECRET).unwrap(),
        &request,
        SystemTime::now(),
        &context,
    )
    .unwrap();
    let mut headers: serde_json::Map<String, Value> = signed
        .iter()
        .map(|(name, value)| (name.to_owned(), json!(value)))
        .collect();
    headers.insert("content-type".into(), json!("application/json"));
    headers.insert(
        "host".into(),
        json!("abc123.execute-api.eu-west-1.amazonaws.com"),
    );
    headers
}

/// A REST API (v1) event: `path` as the top level gives it, `context_path` as
/// `requestContext.path`, `stage`.
fn rest_api(
    path: &str,
    context_path: &str,
    stage: &str,
    signed_for: &str,
    query: Option<&str>,
) -> Value {
    let (single, multi) = match query {
        Some(q) => {
            let (k, v) = q.split_once('=').unwrap();
            (json!({k: v}), json!({k: [v]}))
        }
        None => (Value::Null, Value::Null),
    };
    json!({
        "resource": "/{proxy+}", "path": path, "httpMethod": "POST",
        "headers": signed_headers(signed_for), "multiValueHeaders": {},
        "queryStringParameters": single, "multiValueQueryStringParameters": multi,
        "pathParameters": null, "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012", "resourceId": "abc", "stage": stage,
            "requestId": "r1", "identity": {"sourceIp": "203.0.113.9"},
            "resourcePath": "/{proxy+}", "httpMethod": "POST", "apiId": "abc123",
            "path": context_path, "protocol": "HTTP/1.1",
        },
        "body": BODY, "isBase64Encoded": false,
    })
}

/// An HTTP API (v2) or Function URL event.
fn http_api(raw_path: &str, raw_query: &str, stage: &str, signed_for: &str, base64: bool) -> Value {
    let body = if base64 {
        base64::engine::general_purpose::STANDARD.encode(BODY)
    } else {
        BODY.to_owned()
    };
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": raw_query,
        "headers": signed_headers(signed_for),
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123", "requestId": "r2", "routeKey": "$default", "stage": stage,
            "time": "07/Dec/2026:08:00:00 +0000", "timeEpoch": 1_796_630_400_000_u64,
            "http": {"method": "POST", "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "Contentful"},
        },
        "body": body, "isBase64Encoded": base64,
    })
}

/// An Application Load Balancer event.
fn alb(path: &str, query: Option<&str>, signed_for: &str) -> Value {
    let single = query.map_or(json!({}), |q| {
        let (k, v) = q.split_once('=').unwrap();
        json!({k: v})
    });
    json!({
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/t/1"}},
        "httpMethod": "POST", "path": path, "queryStringParameters": single,
        "headers": signed_headers(signed_for), "body": BODY, "isBase64Encoded": false,
    })
}

/// The router of a function served under `prefix`, behind the layer: its status and reason.
async fn run(event: &Value, prefix: Option<&str>) -> (u16, String) {
    let mut verifier = RequestVerifier::new(SigningSecret::new(SECRET).unwrap());
    let mut layer = LambdaTargetLayer::new();
    if let Some(prefix) = prefix {
        verifier = verifier.with_path_prefix(prefix).unwrap();
        layer = layer.with_prefix(prefix).unwrap();
    }
    let router = Router::new()
        .route(
            "/contentful/events",
            post(|| async { "ok" }).layer(ContentfulRequestLayer::new(verifier)),
        )
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
            rest_api(
                "/contentful/events",
                "/prod/contentful/events",
                "prod",
                "/prod/contentful/events",
                None,
            ),
            Some("/prod"),
        ),
        (
            "v1 execute-api, another stage",
            rest_api(
                "/contentful/events",
                "/test/contentful/events",
                "test",
                "/test/contentful/events",
                None,
            ),
            Some("/test"),
        ),
        // REST API, a custom domain with the base path `api`.
        (
            "v1 custom domain",
            rest_api(
                "/contentful/events",
                "/api/contentful/events",
                "prod",
                "/api/contentful/events",
                None,
            ),
            Some("/api"),
        ),
        (
            "v2 $default",
            http_api(
                "/contentful/events",
                "x=1&a=%2F",
                "$default",
                "/contentful/events?x=1&a=%2F",
                false,
            ),
            None,
        ),
        (
            "v2 named stage",
            http_api(
                "/prod/contentful/events",
                "b=2&a=1",
                "prod",
                "/prod/contentful/events?b=2&a=1",
                false,
            ),
            Some("/prod"),
        ),
        (
            "v2 base64 body",
            http_api(
                "/contentful/events",
                "",
                "$default",
                "/contentful/events",
                true,
            ),
            None,
        ),
        (
            "Function URL",
            http_api(
                "/contentful/events",
                "k=v",
                "$default",
                "/contentful/events?k=v",
                false,
            ),
            None,
        ),
        (
            "Function URL, no query",
            http_api(
                "/contentful/events",
                "",
                "$default",
                "/contentful/events",
                false,
            ),
            None,
        ),
        (
            "ALB",
            alb("/contentful/events", None, "/contentful/events"),
            None,
        ),
        (
            "ALB under a prefix",
            alb("/hooks/contentful/events", None, "/hooks/contentful/events"),
            Some("/hooks"),
        ),
    ];
    for (name, event, prefix) in cases {
        assert_eq!(run(&event, prefix).await, (200, "ok".to_owned()), "{name}");
    }
}

#[tokio::test]
async fn a_tampered_event_is_refused_for_its_signature_and_a_lost_query_for_what_it_is() {
    let mismatch = (401, "signature_mismatch".to_owned());
    let cases = [
        (
            "v2, another path",
            http_api(
                "/contentful/other",
                "",
                "$default",
                "/contentful/events",
                false,
            ),
            None,
            (404, String::new()),
        ),
        (
            "v2, a reordered query",
            http_api(
                "/contentful/events",
                "a=1&b=2",
                "$default",
                "/contentful/events?b=2&a=1",
                false,
            ),
            None,
            mismatch.clone(),
        ),
        (
            "v2, another stage",
            http_api(
                "/test/contentful/events",
                "",
                "test",
                "/prod/contentful/events",
                false,
            ),
            Some("/test"),
            mismatch.clone(),
        ),
        (
            "v1, another stage",
            rest_api(
                "/contentful/events",
                "/test/contentful/events",
                "test",
                "/prod/contentful/events",
                None,
            ),
            Some("/test"),
            mismatch.clone(),
        ),
        (
            "v1, signed without the stage",
            rest_api(
                "/contentful/events",
                "/prod/contentful/events",
                "prod",
                "/contentful/events",
                None,
            ),
            Some("/prod"),
            mismatch,
        ),
        (
            "v1 with a query",
            rest_api(
                "/contentful/events",
                "/prod/contentful/events",
                "prod",
                "/prod/contentful/events?x=1",
                Some("x=1"),
            ),
            Some("/prod"),
            (400, "lambda_query_lost".to_owned()),
        ),
        (
            "ALB with a query",
            alb("/contentful/events", Some("x=1"), "/contentful/events?x=1"),
            None,
            (400, "lambda_query_lost".to_owned()),
        ),
    ];
    for (name, event, prefix, expected) in cases {
        let (status, code) = run(&event, prefix).await;
        if expected.1.is_empty() {
            assert_eq!(status, expected.0, "{name}");
        } else {
            assert_eq!((status, code), expected, "{name}");
        }
    }
}

#[tokio::test]
async fn a_request_no_contentful_signature_covers_is_routed_whatever_its_query() {
    // A Contentstack webhook behind an ALB with a query: Contentstack signs the body alone.
    let mut event = alb("/webhooks/contentstack", Some("token=1"), "/x");
    let headers = event["headers"].as_object_mut().unwrap();
    headers.retain(|name, _| !name.starts_with("x-contentful"));
    assert_eq!(run(&event, None).await, (200, "routed".to_owned()));
}
