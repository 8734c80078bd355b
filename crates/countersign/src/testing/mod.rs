//! Signed requests for your own handlers' tests (feature `testing`; enable it in
//! `[dev-dependencies]` only).
//!
//! A [`TestKit`] holds dev keys and secrets, the verifiers and key source that match them,
//! and builds complete signed `http::Request`s, one call per scheme, signed as the providers
//! sign them at the current time:
//!
//! | request | call |
//! |---|---|
//! | a Contentstack webhook (RSA) | [`TestKit::contentstack_webhook`] |
//! | a Contentstack webhook (HMAC) | [`TestKit::contentstack_hmac_webhook`] |
//! | the page load of a signed UI location | [`TestKit::app_token_page_load`] |
//! | a Contentful webhook | [`TestKit::contentful_webhook`] |
//! | a Contentful app event | [`TestKit::contentful_app_event`] |
//! | a frontend-signed Contentful `POST` (what the example calls an action) | [`TestKit::contentful_action`] |
//! | a frontend-signed Contentful request with any method | [`TestKit::contentful_frontend_request`] |
//!
//! Build your router with the kit's verifiers and keys in place of the production ones, and
//! drive it with `tower::ServiceExt::oneshot`:
//!
//! ```
//! use axum::{Router, routing::post};
//! use countersign::contentstack::{Event, Module, WebhookBody};
//! use countersign::testing::TestKit;
//! use countersign::{ContentstackWebhook, ContentstackWebhookLayer};
//! use http::StatusCode;
//! use tower::ServiceExt as _;
//!
//! async fn handler(webhook: ContentstackWebhook) -> String {
//!     match (webhook.module(), webhook.event()) {
//!         (Some(Module::Entry), Some(Event::Publish(_))) => "published".into(),
//!         _ => "ignored".into(),
//!     }
//! }
//!
//! fn app(kit: &TestKit) -> Router {
//!     let layer = ContentstackWebhookLayer::new(kit.webhook_verifier(), kit.contentstack_keys());
//!     Router::new().route("/webhooks", post(handler).layer(layer))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let kit = TestKit::new();
//! let publish = WebhookBody::new("entry", "publish")
//!     .with_api_key(TestKit::STACK)
//!     .with_data(&serde_json::json!({"entry": {"uid": "blt1"}}));
//!
//! let response = app(&kit).oneshot(kit.contentstack_webhook("/webhooks", &publish)).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // The same bytes, signed by another key: refused before the handler runs.
//! let forged = TestKit::new().with_contentstack_key(countersign::contentstack::SigningKey::generate().unwrap());
//! let response = app(&kit).oneshot(forged.contentstack_webhook("/webhooks", &publish)).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```
//!
//! The keys and secrets are fixed and public: they prove nothing outside a test. A kit
//! [`at`](TestKit::at) another time signs as of then (stale and future deliveries).
//!
//! With the `lambda` feature too, [`lambda::LambdaEvent`] turns a signed request into the
//! event an API Gateway, a Function URL or a load balancer hands an AWS Lambda function.

#[cfg(feature = "lambda")]
pub mod lambda;

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use countersign_core::contentful::{
    self, Context, IDEMPOTENCY_KEY, RequestToSign, RequestVerifier, SigningSecret, TOPIC,
};
use countersign_core::contentstack::{
    APP_TOKEN_LIFETIME, APP_TOKEN_QUERY_PARAMETER, AppTokenVerifier, HMAC_SIGNATURE_HEADER,
    HmacSecret, KeySet, RSA_SIGNATURE_HEADER, SaltLength, SigningKey, StaticKeys, WebhookBody,
    WebhookVerifier, mint_app_token,
};
use http::{Method, Request};
use serde_json::{Value, json};

/// The dev key that signs as Contentstack (webhooks and app-tokens). Public: tests only.
const DEV_KEY: &str = include_str!("dev-key.pem");
/// The dev Contentstack HMAC secret. Public: tests only.
const DEV_HMAC_SECRET: &str = "countersign-testing-contentstack-hmac-secret";
/// The dev Contentful signing secret (64 characters). Public: tests only.
const DEV_CONTENTFUL_SECRET: &str =
    "countersign-testing-contentful-signing-secret-0123456789abcdefgh";
/// The dev Contentful webhook signing secret of the kit's space (64 characters). Public: tests
/// only.
const DEV_CONTENTFUL_WEBHOOK_SECRET: &str =
    "countersign-testing-contentful-webhook-secret-0123456789abcdefgh";

/// Dev keys and secrets, the verifiers that match them, and signed requests.
#[derive(Clone)]
pub struct TestKit {
    key: Arc<SigningKey>,
    hmac: HmacSecret,
    contentful: SigningSecret,
    contentful_webhook: SigningSecret,
    at: Option<SystemTime>,
}

impl Default for TestKit {
    fn default() -> Self {
        Self::new()
    }
}

impl TestKit {
    /// The app uid in the kit's app-tokens and what [`app_token_verifier`](Self::app_token_verifier) expects.
    pub const APP_UID: &'static str = "test-app-uid";
    /// The stack of the kit's app-tokens by default.
    pub const STACK: &'static str = "blt0000000000000test";
    /// The organization of the kit's app-tokens.
    pub const ORGANIZATION: &'static str = "blt000000000000test-org";
    /// The installation of the kit's app-tokens.
    pub const INSTALLATION: &'static str = "test-installation-uid";
    /// The user of the kit's app-tokens and frontend-signed requests.
    pub const USER: &'static str = "test-user";
    /// The Contentful space of the kit's requests.
    pub const SPACE: &'static str = "test-space";
    /// The Contentful environment of the kit's requests.
    pub const ENVIRONMENT: &'static str = "master";
    /// The Contentful app definition of the kit's frontend-signed requests.
    pub const APP_DEFINITION: &'static str = "test-app-definition";

    /// The kit, with the fixed dev keys and secrets, signing at the current time.
    ///
    /// # Panics
    /// Never: the embedded key and secrets are valid (tested).
    #[must_use]
    pub fn new() -> Self {
        Self {
            key: Arc::new(SigningKey::from_pem(DEV_KEY).expect("the embedded dev key parses")),
            hmac: HmacSecret::new(DEV_HMAC_SECRET).expect("the dev HMAC secret is valid"),
            contentful: SigningSecret::new(DEV_CONTENTFUL_SECRET)
                .expect("the dev Contentful secret is valid"),
            contentful_webhook: SigningSecret::new(DEV_CONTENTFUL_WEBHOOK_SECRET)
                .expect("the dev Contentful webhook secret is valid"),
            at: None,
        }
    }

    /// Signs as of `at` rather than the clock's time: a stale or future delivery.
    #[must_use]
    pub fn at(mut self, at: SystemTime) -> Self {
        self.at = Some(at);
        self
    }

    /// Signs with `key` as Contentstack's key (a forgery, to the kit's verifiers).
    #[must_use]
    pub fn with_contentstack_key(mut self, key: SigningKey) -> Self {
        self.key = Arc::new(key);
        self
    }

    /// Signs Contentstack HMAC webhooks with `secret`.
    #[must_use]
    pub fn with_contentstack_hmac_secret(mut self, secret: HmacSecret) -> Self {
        self.hmac = secret;
        self
    }

    /// Signs Contentful requests with `secret`: app events, actions, frontend-signed requests
    /// and webhooks alike (a forgery, to the kit's verifiers).
    #[must_use]
    pub fn with_contentful_secret(mut self, secret: SigningSecret) -> Self {
        self.contentful_webhook = secret.clone();
        self.contentful = secret;
        self
    }

    fn now(&self) -> SystemTime {
        self.at.unwrap_or_else(SystemTime::now)
    }

    /// The key that signs as Contentstack.
    #[must_use]
    pub fn contentstack_signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The key source holding the kit's Contentstack public key, for
    /// [`ContentstackWebhookLayer`](crate::ContentstackWebhookLayer) and
    /// [`AppTokenLayer`](crate::contentstack::session::AppTokenLayer).
    #[must_use]
    pub fn contentstack_keys(&self) -> StaticKeys {
        StaticKeys::new(KeySet::from(self.key.public_key().clone()))
    }

    /// The kit's Contentstack HMAC secret.
    #[must_use]
    pub fn contentstack_hmac_secret(&self) -> HmacSecret {
        self.hmac.clone()
    }

    /// A webhook verifier that accepts the kit's RSA and HMAC webhooks.
    #[must_use]
    pub fn webhook_verifier(&self) -> WebhookVerifier {
        WebhookVerifier::new().with_hmac_secret(self.hmac.clone())
    }

    /// An app-token verifier that accepts the kit's app-tokens (app uid [`Self::APP_UID`]).
    #[must_use]
    pub fn app_token_verifier(&self) -> AppTokenVerifier {
        AppTokenVerifier::new().with_app_uid(Self::APP_UID)
    }

    /// The kit's Contentful signing secret.
    #[must_use]
    pub fn contentful_secret(&self) -> SigningSecret {
        self.contentful.clone()
    }

    /// The kit's Contentful webhook signing secret, the one of the space [`Self::SPACE`].
    #[must_use]
    pub fn contentful_webhook_secret(&self) -> SigningSecret {
        self.contentful_webhook.clone()
    }

    /// A Contentful verifier that accepts the kit's requests: the app's signing secret, and
    /// the webhook signing secret bound to the space [`Self::SPACE`].
    #[must_use]
    pub fn contentful_verifier(&self) -> RequestVerifier {
        RequestVerifier::new(self.contentful.clone())
            .with_space_webhook_secret(Self::SPACE, self.contentful_webhook.clone())
    }

    /// A Contentstack webhook signed with RSA-PSS (salt 32), `POST uri`, with a fresh
    /// `triggered_at`.
    ///
    /// # Panics
    /// When `uri` is not a request target.
    #[must_use]
    pub fn contentstack_webhook(&self, uri: &str, body: &WebhookBody) -> Request<Body> {
        let bytes = body.to_bytes(self.now());
        let signature = self
            .key
            .sign_webhook(&bytes, SaltLength::Digest)
            .expect("a parsed key signs");
        contentstack_request(uri, RSA_SIGNATURE_HEADER, &signature, bytes)
    }

    /// A Contentstack webhook signed with the HMAC method (`t=..,v1=..`), `POST uri`, with a
    /// fresh `triggered_at`.
    ///
    /// # Panics
    /// When `uri` is not a request target.
    #[must_use]
    pub fn contentstack_hmac_webhook(&self, uri: &str, body: &WebhookBody) -> Request<Body> {
        let now = self.now();
        let bytes = body.to_bytes(now);
        let signature = self.hmac.sign(&bytes, now);
        contentstack_request(uri, HMAC_SIGNATURE_HEADER, &signature, bytes)
    }

    /// An app-token as Contentstack mints one for a signed UI location: the kit's app,
    /// installation, organization, user and stack, with `claims` added or replacing them
    /// (`"stack_api_key": null` for an organization app), valid for a few minutes.
    ///
    /// # Panics
    /// When `claims` is not a JSON object.
    #[must_use]
    pub fn app_token(&self, claims: &Value) -> String {
        let mut all = json!({
            "app_uid": Self::APP_UID,
            "installation_uid": Self::INSTALLATION,
            "organization_uid": Self::ORGANIZATION,
            "user_uid": Self::USER,
            "stack_api_key": Self::STACK,
        });
        let (Some(all_map), Some(extra)) = (all.as_object_mut(), claims.as_object()) else {
            panic!("app-token claims are a JSON object");
        };
        for (name, value) in extra {
            if value.is_null() {
                all_map.remove(name);
            } else {
                all_map.insert(name.clone(), value.clone());
            }
        }
        mint_app_token(&self.key, &all, self.now(), APP_TOKEN_LIFETIME).expect("a parsed key signs")
    }

    /// The first load of a signed UI location: `GET uri?app-token=<token>` with the kit's
    /// [`app_token`](Self::app_token) for `claims`.
    ///
    /// # Panics
    /// When `uri` is not a request target or `claims` is not a JSON object.
    #[must_use]
    pub fn app_token_page_load(&self, uri: &str, claims: &Value) -> Request<Body> {
        let separator = if uri.contains('?') { '&' } else { '?' };
        let target = format!(
            "{uri}{separator}{APP_TOKEN_QUERY_PARAMETER}={}",
            self.app_token(claims)
        );
        Request::get(target)
            .body(Body::empty())
            .expect("a valid request target")
    }

    /// A Contentful webhook, `POST uri`, signed with the kit's webhook secret (the space's),
    /// its topic, a fresh idempotency key and the space and environment signed. Which headers
    /// Contentful itself signs is not published; the kit signs the topic so that `topic()` has
    /// one to report.
    ///
    /// # Panics
    /// When `uri` is not a request target or the topic not a header value.
    #[must_use]
    pub fn contentful_webhook(
        &self,
        uri: &str,
        topic: &str,
        body: impl AsRef<[u8]>,
    ) -> Request<Body> {
        let key = countersign_core::random_hex(16).expect("the random source works");
        let (context, own) = event_headers(topic, &key);
        let secret = &self.contentful_webhook;
        self.contentful_request(secret, Method::POST, uri, &own, body.as_ref(), &context)
    }

    /// A Contentful app event, `POST uri`, signed with the kit's secret, with `topic`, the
    /// `idempotency_key` shared by its retries, and the space and environment signed.
    ///
    /// # Panics
    /// When `uri` is not a request target or a value not a header value.
    #[must_use]
    pub fn contentful_app_event(
        &self,
        uri: &str,
        topic: &str,
        body: impl AsRef<[u8]>,
        idempotency_key: &str,
    ) -> Request<Body> {
        let (context, own) = event_headers(topic, idempotency_key);
        let secret = &self.contentful;
        self.contentful_request(secret, Method::POST, uri, &own, body.as_ref(), &context)
    }

    /// A request an app frontend signs through Contentful (`appSignedRequest`), `POST uri`,
    /// with the user, the app, the space and the environment signed as context: a
    /// [`RequestKind::Frontend`](countersign_core::contentful::RequestKind::Frontend).
    ///
    /// # Panics
    /// When `uri` is not a request target or `user_id` not a header value.
    #[must_use]
    pub fn contentful_action(
        &self,
        uri: &str,
        user_id: &str,
        body: impl AsRef<[u8]>,
    ) -> Request<Body> {
        self.contentful_frontend_request(Method::POST, uri, user_id, body)
    }

    /// A request an app frontend signs through Contentful with any method (a `GET` of the
    /// app's own API, say), with the user, the app, the space and the environment signed as
    /// context.
    ///
    /// # Panics
    /// When `uri` is not a request target or `user_id` not a header value.
    #[must_use]
    pub fn contentful_frontend_request(
        &self,
        method: Method,
        uri: &str,
        user_id: &str,
        body: impl AsRef<[u8]>,
    ) -> Request<Body> {
        let context = Context {
            space_id: Some(Self::SPACE.into()),
            environment_id: Some(Self::ENVIRONMENT.into()),
            app_id: Some(Self::APP_DEFINITION.into()),
            user_id: Some(user_id.into()),
            crn: None,
        };
        let own = [("content-type", "application/json")];
        let secret = &self.contentful;
        self.contentful_request(secret, method, uri, &own, body.as_ref(), &context)
    }

    fn contentful_request(
        &self,
        secret: &SigningSecret,
        method: Method,
        uri: &str,
        own: &[(&str, &str)],
        body: &[u8],
        context: &Context,
    ) -> Request<Body> {
        let mut to_sign = RequestToSign::new(method.clone(), uri).with_body(body);
        for (name, value) in own {
            to_sign = to_sign.with_header(name, value);
        }
        let signed = contentful::sign(secret, &to_sign, self.now(), context)
            .expect("the kit's header values move no boundary");
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in own {
            builder = builder.header(*name, *value);
        }
        for (name, value) in signed.iter() {
            builder = builder.header(name, value);
        }
        builder
            .body(Body::from(body.to_vec()))
            .expect("a valid request target and header values")
    }
}

/// The context and headers of a webhook or app event of the kit's space.
fn event_headers<'a>(
    topic: &'a str,
    idempotency_key: &'a str,
) -> (Context, [(&'a str, &'a str); 3]) {
    let context = Context {
        space_id: Some(TestKit::SPACE.into()),
        environment_id: Some(TestKit::ENVIRONMENT.into()),
        ..Context::default()
    };
    let own = [
        (
            "content-type",
            "application/vnd.contentful.management.v1+json",
        ),
        (TOPIC, topic),
        (IDEMPOTENCY_KEY, idempotency_key),
    ];
    (context, own)
}

fn contentstack_request(uri: &str, header: &str, signature: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(header, signature)
        .body(Body::from(body))
        .expect("a valid request target")
}

impl std::fmt::Debug for TestKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKit")
            .field("contentstack_key", &self.key.public_key().fingerprint())
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}
