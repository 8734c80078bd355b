//! `POST /webhooks/contentstack`: the layers that verify a delivery, in order, and the
//! inbox that commits it once per delivery id and answers at once ([`crate::deliveries`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use countersign::contentstack::{
    AnyStack, BoxKeySource, BoxStackCheck, Module, StackCheck, Tenancy, TenantUnavailable,
    WebhookVerifier, stack_check_fn,
};
use countersign::ip::ForwardedHeader;
use countersign::replay::DeliveryId;
use countersign::{
    BasicAuthLayer, ContentstackWebhook, ContentstackWebhookLayer, IpAllowlistLayer,
    RequiredHeadersLayer,
};
use tower::ServiceBuilder;

use crate::config::Config;
use crate::deliveries::{Deliveries, RECORD_NOW_TIMEOUT, from_body};
use crate::store::{Change, Store};

/// The most stacks remembered as installed for when the database cannot be read.
const REMEMBERED_STACKS: usize = 100_000;

/// How often every installed stack is read again, for when the database cannot be read.
const REREAD_INSTALLED: std::time::Duration = std::time::Duration::from_secs(2);

/// This app's stacks: those with a recorded installation that is not uninstalled. While the
/// database cannot be read (or does not answer within a second), a stack found installed by
/// the last reading of every installed stack (at start and every [`REREAD_INSTALLED`]) is
/// still taken, so that its deliveries go on being acknowledged (into the spool); any other is
/// answered 503. Only that reading adds stacks (a delivery's read that raced an uninstall
/// cannot), and a delivery's read that finds a stack uninstalled removes it at once.
fn installed_stacks(store: Store) -> impl StackCheck {
    let installed = Arc::new(Mutex::new(HashSet::<String>::new()));
    let (reader, known) = (store.clone(), Arc::downgrade(&installed));
    tokio::spawn(async move {
        let mut every = tokio::time::interval(REREAD_INSTALLED);
        loop {
            every.tick().await;
            let Some(known) = known.upgrade() else {
                return;
            };
            if let Ok(Ok(stacks)) = tokio::time::timeout(
                RECORD_NOW_TIMEOUT,
                reader.installed_stacks(REMEMBERED_STACKS),
            )
            .await
            {
                *known.lock().unwrap_or_else(PoisonError::into_inner) =
                    stacks.into_iter().collect();
            }
        }
    });
    stack_check_fn(move |api_key: &str| {
        let (store, api_key, installed) =
            (store.clone(), api_key.to_owned(), Arc::clone(&installed));
        async move {
            let read =
                tokio::time::timeout(RECORD_NOW_TIMEOUT, store.is_installed(api_key.clone()))
                    .await
                    .unwrap_or_else(|_| Err("the database did not answer in time".into()));
            let mut remembered = installed.lock().unwrap_or_else(PoisonError::into_inner);
            match read {
                Ok(true) => Ok(true),
                Ok(false) => {
                    remembered.remove(&api_key);
                    Ok(false)
                }
                Err(_) if remembered.contains(&api_key) => Ok(true),
                Err(error) => {
                    tracing::error!(%error, "cannot read the installation records");
                    Err(TenantUnavailable::new(
                        "the installation records cannot be read",
                    ))
                }
            }
        }
    })
}

/// The webhook route and its layers. With an app uid, installation events of this app only
/// and every other delivery from an installed stack; without, any delivery.
pub(crate) fn route(
    config: &Config,
    keys: BoxKeySource,
    store: Store,
    deliveries: Deliveries,
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
    // tenant. The inbox is the replay store: a delivery id already there is a duplicate.
    let layers = ServiceBuilder::new()
        .option_layer(ip_allowlist)
        .option_layer(config.basic_auth.clone().map(BasicAuthLayer::new))
        .option_layer(
            config
                .required_headers
                .clone()
                .map(RequiredHeadersLayer::new),
        )
        .layer(verification);
    Router::new()
        .route("/webhooks/contentstack", post(webhook).layer(layers))
        .with_state(Webhooks { store, deliveries })
}

#[derive(Clone)]
struct Webhooks {
    store: Store,
    deliveries: Deliveries,
}

/// Commits the verified delivery to the inbox and answers it. An installation event is also
/// recorded at once when the database answers within a second, since the stack check of the
/// deliveries that follow reads it; the workers' record of it then changes nothing.
async fn webhook(
    State(app): State<Webhooks>,
    DeliveryId(id): DeliveryId,
    webhook: ContentstackWebhook,
    request: Request,
) -> Response {
    let installation = (webhook.module() == Some(Module::AppInstallation))
        .then(|| {
            from_body(
                id.to_hex(),
                webhook.api_key(),
                webhook.body(),
                SystemTime::now(),
            )
        })
        .flatten()
        .filter(|delivery| delivery.change != Change::Logged);
    if let Some(delivery) = installation {
        match tokio::time::timeout(RECORD_NOW_TIMEOUT, app.store.record(delivery)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, delivery = %id, "an installation event waits in the inbox: the database failed");
            }
            Err(_) => {
                tracing::warn!(delivery = %id, "an installation event waits in the inbox: the database did not answer in time");
            }
        }
    }
    app.deliveries.acknowledge(request).await
}
