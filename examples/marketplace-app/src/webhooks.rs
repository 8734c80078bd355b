//! `POST /webhooks/contentstack`: the layers that verify a delivery, in order, and the
//! handler that records it once per delivery id.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use countersign::contentstack::{
    AnyStack, BoxKeySource, BoxStackCheck, Event, Module, StackCheck, Tenancy, TenantUnavailable,
    WebhookVerifier, stack_check_fn,
};
use countersign::ip::ForwardedHeader;
use countersign::replay::{BoxReplayStore, DeliveryId, ReplayGuardLayer};
use countersign::{
    BasicAuthLayer, ContentstackWebhook, ContentstackWebhookLayer, IpAllowlistLayer,
    RequiredHeadersLayer,
};
use serde_json::{Value, json};
use tower::ServiceBuilder;

use crate::config::Config;
use crate::store::{Change, Delivery, Store};
use crate::{AppResult, internal};

/// This app's stacks: those with a recorded installation that is not uninstalled.
fn installed_stacks(store: Store) -> impl StackCheck {
    stack_check_fn(move |api_key: &str| {
        let (store, api_key) = (store.clone(), api_key.to_owned());
        async move {
            store.is_installed(api_key).await.map_err(|error| {
                tracing::error!(%error, "cannot read the installation records");
                TenantUnavailable::new("the installation records cannot be read")
            })
        }
    })
}

/// The webhook route and its layers. With an app uid, installation events of this app only
/// and every other delivery from an installed stack; without, any delivery.
pub(crate) fn route(
    config: &Config,
    keys: BoxKeySource,
    replay: BoxReplayStore,
    store: Store,
) -> Router {
    let tenancy = match &config.app_uid {
        Some(app_uid) => Tenancy::new()
            .with_app_uid(app_uid)
            .with_stacks(BoxStackCheck::new(installed_stacks(store.clone()))),
        None => Tenancy::new().with_stacks(BoxStackCheck::new(AnyStack)),
    };
    let mut verifier = WebhookVerifier::new().with_tolerance(config.tolerance);
    for (stack, secret) in &config.hmac_secrets {
        verifier = match stack {
            Some(stack) => verifier.with_stack_hmac_secret(stack, secret.clone()),
            None => {
                tracing::warn!(
                    "an HMAC secret in CONTENTSTACK_HMAC_SECRETS is bound to no stack: whoever holds it signs for any stack; write API_KEY=secret"
                );
                verifier.with_hmac_secret(secret.clone())
            }
        };
    }
    let mut verification = ContentstackWebhookLayer::new(verifier, keys).with_tenancy(tenancy);
    if let Some(limit) = config.body_limit {
        verification = verification.with_body_limit(limit);
    }
    let ip_allowlist = config.allowed_ips.as_ref().map(|allowed| {
        let layer = IpAllowlistLayer::new(allowed.clone());
        match &config.trusted_proxies {
            Some(proxies) => {
                layer.with_trusted_proxies(proxies.clone(), ForwardedHeader::XForwardedFor)
            }
            None => layer,
        }
    });
    // In this order: the address, Basic auth, the custom headers, the body, signature and
    // tenant, replay protection.
    let layers = ServiceBuilder::new()
        .option_layer(ip_allowlist)
        .option_layer(config.basic_auth.clone().map(BasicAuthLayer::new))
        .option_layer(
            config
                .required_headers
                .clone()
                .map(RequiredHeadersLayer::new),
        )
        .layer(verification)
        .layer(ReplayGuardLayer::new(replay));
    Router::new()
        .route("/webhooks/contentstack", post(webhook).layer(layers))
        .with_state(store)
}

async fn webhook(
    State(store): State<Store>,
    DeliveryId(id): DeliveryId,
    webhook: ContentstackWebhook,
) -> AppResult<Json<Value>> {
    let (module, event) = (webhook.module(), webhook.event());
    let change = match (&module, &event) {
        (Some(Module::AppInstallation), Some(Event::Install | Event::Upgrade)) => Change::Installed,
        (Some(Module::AppInstallation), Some(Event::Uninstall)) => Change::Uninstalled,
        // Content events, releases, and installation events we do not know: logged.
        _ => Change::Logged,
    };
    let new = store
        .record(Delivery {
            id: id.to_hex(),
            change,
            module: module.map_or_else(|| "unknown".to_owned(), |m| m.to_string()),
            event: event.map_or_else(|| "unknown".to_owned(), |e| e.to_string()),
            api_key: webhook.api_key().unwrap_or("").to_owned(),
            triggered_at: webhook.triggered_at().map(str::to_owned),
            happened_at: countersign::contentstack::triggered_at(webhook.body())
                .unwrap_or_else(|_| webhook.signed_at()),
            data: webhook.data.clone(),
        })
        .await
        .map_err(internal)?;
    if !new {
        tracing::info!(delivery = %id, "the delivery was recorded before; nothing changed");
    }
    Ok(Json(json!({"status": "accepted"})))
}
