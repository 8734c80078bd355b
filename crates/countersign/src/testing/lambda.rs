//! AWS Lambda events for your function's tests (features `testing` and `lambda`).
//!
//! [`LambdaEvent`] turns a signed request (one of the [`TestKit`](super::TestKit)'s, or your
//! own) into the event the kind of trigger you name would hand your function, in the
//! documented shape: the path and query as that kind carries them (a REST API's stage in
//! `requestContext.path` only, a query kept as sent or only as a map), the headers and the
//! body. [`LambdaEvent::request`] converts it with `lambda_http`'s own conversion, so the test
//! sees what the function will:
//!
//! ```
//! use axum::{Router, routing::post};
//! use countersign::ContentfulRequestLayer;
//! use countersign::lambda::LambdaTargetLayer;
//! use countersign::testing::{TestKit, lambda::LambdaEvent};
//! use tower::ServiceExt as _;
//! use tower_layer::Layer as _;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let kit = TestKit::new();
//! let verifier = kit.contentful_verifier().with_path_prefix("/prod").unwrap();
//! let router = Router::new().route(
//!     "/contentful/events",
//!     post(|| async { "ok" }).layer(ContentfulRequestLayer::new(verifier)),
//! );
//! let function = LambdaTargetLayer::new().with_prefix("/prod").unwrap().layer(router);
//!
//! // Contentful sent it to the stage's URL, the stage in the path it signed.
//! let sent = kit.contentful_app_event("/prod/contentful/events", "AppInstallation.create", "{}", "key-1");
//! let event = LambdaEvent::rest_api("prod").request(sent).await;
//! assert_eq!(function.oneshot(event).await.unwrap().status(), 200);
//! # }
//! ```

use axum::body::Body;
use base64::Engine as _;
use http::Request;
use serde_json::{Map, Value, json};

/// The host of the events' requests.
const HOST: &str = "abc123.execute-api.eu-west-1.amazonaws.com";

/// How a trigger hands a request to a function.
#[derive(Debug, Clone)]
enum Kind {
    /// REST API (payload 1.0); `strip` is what its top-level `path` drops of the sender's.
    RestApi { stage: String, strip: String },
    /// HTTP API (payload 2.0), or a Function URL (`stage` `$default`).
    HttpApi { stage: String, function_url: bool },
    /// Application Load Balancer.
    Alb,
}

/// The kind of event a signed request reaches a function as; [`event`](Self::event) builds
/// it.
#[derive(Debug, Clone)]
pub struct LambdaEvent {
    kind: Kind,
    base64: bool,
}

impl LambdaEvent {
    /// A REST API (v1) event through the `execute-api` host of `stage`: the sender's path
    /// starts with `/{stage}`, which `requestContext.path` keeps and `path` drops.
    #[must_use]
    pub fn rest_api(stage: &str) -> Self {
        Self::of(Kind::RestApi {
            stage: stage.to_owned(),
            strip: format!("/{stage}"),
        })
    }

    /// A REST API (v1) event through a custom domain whose base path mapping `base_path`
    /// (`/api`) leads to `stage`: `requestContext.path` keeps the base path, `path` drops it.
    #[must_use]
    pub fn rest_api_custom_domain(base_path: &str, stage: &str) -> Self {
        Self::of(Kind::RestApi {
            stage: stage.to_owned(),
            strip: base_path.to_owned(),
        })
    }

    /// An HTTP API (v2) event of `stage`: `$default`, or a named stage, which then starts the
    /// sender's path (`rawPath` keeps it).
    #[must_use]
    pub fn http_api(stage: &str) -> Self {
        Self::of(Kind::HttpApi {
            stage: stage.to_owned(),
            function_url: false,
        })
    }

    /// A Function URL event (payload 2.0, no stage).
    #[must_use]
    pub fn function_url() -> Self {
        Self::of(Kind::HttpApi {
            stage: "$default".to_owned(),
            function_url: true,
        })
    }

    /// An Application Load Balancer event.
    #[must_use]
    pub fn alb() -> Self {
        Self::of(Kind::Alb)
    }

    fn of(kind: Kind) -> Self {
        Self {
            kind,
            base64: false,
        }
    }

    /// The body base64-encoded (`isBase64Encoded`), as a trigger sends a binary one. A body
    /// that is not UTF-8 always is.
    #[must_use]
    pub fn with_base64_body(mut self) -> Self {
        self.base64 = true;
        self
    }

    /// The event of `request`, whose target is the one its sender called.
    ///
    /// # Panics
    /// When the body cannot be read (it is in memory in the kit's requests).
    pub async fn event(&self, request: Request<Body>) -> Value {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .expect("a request built in memory has its body");
        let (body, base64) = match std::str::from_utf8(&body) {
            Ok(text) if !self.base64 => (text.to_owned(), false),
            _ => (
                base64::engine::general_purpose::STANDARD.encode(&body),
                true,
            ),
        };
        let method = parts.method.as_str();
        let path = parts.uri.path();
        let query = parts.uri.query().unwrap_or("");
        let mut headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        if !parts.headers.contains_key(http::header::HOST) {
            headers.push(("host".to_owned(), HOST.to_owned()));
        }
        let mut event = match &self.kind {
            Kind::RestApi { stage, strip } => {
                let (single, multi) = query_maps(query, true);
                json!({
                    "resource": "/{proxy+}",
                    "path": path.strip_prefix(strip.as_str()).filter(|p| p.starts_with('/')).unwrap_or(path),
                    "httpMethod": method,
                    "headers": last_values(&headers),
                    "multiValueHeaders": all_values(&headers),
                    "queryStringParameters": single,
                    "multiValueQueryStringParameters": multi,
                    "pathParameters": null,
                    "stageVariables": null,
                    "requestContext": {
                        "accountId": "123456789012", "resourceId": "abc123", "stage": stage,
                        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                        "identity": {"sourceIp": "203.0.113.9"},
                        "resourcePath": "/{proxy+}", "httpMethod": method, "apiId": "abc123",
                        "path": path, "protocol": "HTTP/1.1",
                    },
                })
            }
            Kind::HttpApi {
                stage,
                function_url,
            } => {
                let (cookies, others): (Vec<_>, Vec<_>) =
                    headers.into_iter().partition(|(name, _)| name == "cookie");
                let cookies: Vec<&str> = cookies
                    .iter()
                    .flat_map(|(_, value)| value.split("; "))
                    .collect();
                let domain = if *function_url {
                    "abc123.lambda-url.eu-west-1.on.aws"
                } else {
                    HOST
                };
                // An HTTP API hands over the path percent-decoded (lambda_http's own sample
                // event has a space in `rawPath`); a Function URL as sent.
                let path = if *function_url {
                    path.to_owned()
                } else {
                    percent_encoding::percent_decode_str(path)
                        .decode_utf8_lossy()
                        .into_owned()
                };
                json!({
                    "version": "2.0",
                    "routeKey": "$default",
                    "rawPath": path,
                    "rawQueryString": query,
                    "cookies": cookies,
                    "headers": joined_values(&others),
                    "requestContext": {
                        "accountId": "123456789012", "apiId": "abc123", "domainName": domain,
                        "domainPrefix": "abc123", "requestId": "JKJaXmPLvHcESHA=",
                        "routeKey": "$default", "stage": stage,
                        "time": "07/Dec/2026:08:00:00 +0000", "timeEpoch": 1_796_630_400_000_u64,
                        "http": {
                            "method": method, "path": path, "protocol": "HTTP/1.1",
                            "sourceIp": "203.0.113.9", "userAgent": "countersign-testing",
                        },
                    },
                })
            }
            Kind::Alb => {
                // A load balancer sends an empty map, never `null`.
                let (single, _) = query_maps(query, false);
                let single = if single.is_null() { json!({}) } else { single };
                json!({
                    "requestContext": {"elb": {
                        "targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/app/0123456789abcdef",
                    }},
                    "httpMethod": method,
                    "path": path,
                    "queryStringParameters": single,
                    "headers": last_values(&headers),
                })
            }
        };
        event["body"] = json!(body);
        event["isBase64Encoded"] = json!(base64);
        event
    }

    /// [`event`](Self::event), converted by `lambda_http` as the function's runtime converts
    /// it.
    ///
    /// # Panics
    /// When `lambda_http` cannot convert the event (a defect of this builder).
    pub async fn request(&self, request: Request<Body>) -> lambda_http::Request {
        let event = self.event(request).await;
        lambda_http::request::from_str(&event.to_string())
            .expect("lambda_http converts the events it documents")
    }
}

/// `query` as a single-value and a multi-value map, decoded (a REST API's) or as received (a
/// load balancer's); `null` for none, as a REST API sends it.
fn query_maps(query: &str, decode: bool) -> (Value, Value) {
    if query.is_empty() {
        return (Value::Null, Value::Null);
    }
    let decoded = |text: &str| {
        if decode {
            let text = text.replace('+', " ");
            percent_encoding::percent_decode_str(&text)
                .decode_utf8_lossy()
                .into_owned()
        } else {
            text.to_owned()
        }
    };
    let pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decoded(name), decoded(value))
        })
        .collect();
    (
        Value::Object(last_values(&pairs)),
        Value::Object(all_values(&pairs)),
    )
}

/// Each name with its last value.
fn last_values(pairs: &[(String, String)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect()
}

/// Each name with all its values.
fn all_values(pairs: &[(String, String)]) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in pairs {
        if let Value::Array(values) = map.entry(name.clone()).or_insert_with(|| json!([])) {
            values.push(json!(value));
        }
    }
    map
}

/// Each name with its values joined by `,`, as an HTTP API joins repeated headers.
fn joined_values(pairs: &[(String, String)]) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in pairs {
        map.entry(name.clone())
            .and_modify(|joined| {
                *joined = json!(format!("{},{value}", joined.as_str().unwrap_or_default()));
            })
            .or_insert_with(|| json!(value));
    }
    map
}
