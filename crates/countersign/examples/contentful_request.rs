//! A Contentful app backend's event route: `cargo run -p countersign --example contentful_request`.
//!
//! It makes a signing secret (in production: the app's, from `CONTENTFUL_SIGNING_SECRET`) and
//! prints the command that sends it a signed app event.

use std::net::SocketAddr;

use axum::{Json, Router, routing::post};
use countersign::contentful::{RequestKinds, RequestVerifier, SigningSecret};
use countersign::replay::{DeliveryId, MemoryStore, ReplayGuardLayer};
use countersign::{ContentfulRequest, ContentfulRequestLayer};
use tower::ServiceBuilder;

async fn on_event(
    event: ContentfulRequest,
    DeliveryId(id): DeliveryId,
    Json(body): Json<serde_json::Value>,
) -> &'static str {
    println!(
        "{:?} in space {:?}, delivery {id}: {body}",
        event.topic(),
        event.tenant()
    );
    "ok"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = SigningSecret::generate()?;
    // Events only: a request a user had the app frontend sign is refused here (403).
    let verifier = RequestVerifier::new(secret.clone()).with_kinds(RequestKinds::EVENTS);
    let layers = ServiceBuilder::new()
        .layer(ContentfulRequestLayer::new(verifier))
        .layer(ReplayGuardLayer::new(MemoryStore::default()));
    let app = Router::new().route("/contentful/events", post(on_event).layer(layers));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!(
        "Send a signed app event:\n  countersign send contentful http://127.0.0.1:3001/contentful/events \
         --secret {} --topic ContentManagement.Entry.publish --space-id my-space --body '{{}}'",
        secret.expose()
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
