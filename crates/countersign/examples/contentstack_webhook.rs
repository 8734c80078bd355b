//! A Contentstack webhook receiver: `cargo run -p countersign --example contentstack_webhook`.
//!
//! It makes a dev key pair to stand in for Contentstack's (in production:
//! `WellKnownKeys::for_region(..)`) for `/webhooks/contentstack`, serves
//! `/webhooks/contentstack-hmac` for a stack's HMAC-signed webhook (a dev secret bound to the
//! stack `blt0000000000000001`), and prints the commands that send each a signed webhook.

use std::net::SocketAddr;

use axum::{Router, routing::post};
use countersign::contentstack::{HmacSecret, KeySet, SigningKey, StaticKeys, WebhookVerifier};
use countersign::replay::{DeliveryId, MemoryStore, ReplayGuardLayer};
use countersign::{ContentstackWebhook, ContentstackWebhookLayer};
use tower::ServiceBuilder;

async fn on_webhook(webhook: ContentstackWebhook, DeliveryId(id): DeliveryId) -> &'static str {
    println!(
        "{:?} {:?} on {:?}, delivery {id}",
        webhook.module(),
        webhook.event(),
        webhook.api_key()
    );
    "ok"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev_key = SigningKey::generate()?;
    let key_file = std::env::temp_dir().join("countersign-example-contentstack.pem");
    std::fs::write(&key_file, dev_key.to_pkcs1_pem())?;
    let keys = StaticKeys::new(KeySet::from(dev_key.public_key().clone()));

    let layers = ServiceBuilder::new()
        .layer(ContentstackWebhookLayer::new(WebhookVerifier::new(), keys))
        .layer(ReplayGuardLayer::new(MemoryStore::default()));
    // HMAC: no keys, the RSA method off; the secret verifies its own stack's deliveries only.
    let stack = "blt0000000000000001";
    let secret = countersign::random_hex(32)?;
    let hmac = ContentstackWebhookLayer::hmac(
        WebhookVerifier::new().with_stack_hmac_secret(stack, HmacSecret::new(&secret)?),
    )?;
    let replay = ReplayGuardLayer::new(MemoryStore::default());
    let app = Router::new()
        .route("/webhooks/contentstack", post(on_webhook).layer(layers))
        .route(
            "/webhooks/contentstack-hmac",
            post(on_webhook).layer(ServiceBuilder::new().layer(hmac).layer(replay)),
        );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "Send a signed webhook:\n  countersign send contentstack http://127.0.0.1:3000/webhooks/contentstack \
         --private-key {} --module entry --event publish --body '{{\"entry\":{{\"uid\":\"e1\"}}}}'",
        key_file.display()
    );
    println!(
        "Send an HMAC-signed one (its stack's secret):\n  countersign send contentstack http://127.0.0.1:3000/webhooks/contentstack-hmac \
         --hmac-secret {secret} --api-key {stack} --module entry --event publish --body '{{\"entry\":{{\"uid\":\"e1\"}}}}'"
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
