//! A scheduled reconciliation (`RECONCILE_EVERY_SECS`, off by default): every so often, one
//! instance of the fleet reads each installed stack's webhook executions as the app and commits
//! into the inbox what the live path never received (an outage longer than Contentstack's
//! retries). What it finds is counted (`countersign_inbox_reconciled_total`,
//! `countersign_inbox_reconcile_unhealthy_total`) and logged.

use std::time::SystemTime;

use countersign::reconcile::ContentstackRecords;
use countersign_inbox::Action;
use example_support::inbox::AnyInbox;

use crate::config::ReconcileConfig;
use crate::oauth::AsTheApp;
use crate::store::Store;

/// Starts the schedule on the current runtime; it ends with the runtime.
pub(crate) fn start(
    config: ReconcileConfig,
    app_uid: Option<String>,
    store: Store,
    inbox: AnyInbox,
    as_the_app: AsTheApp,
) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(config.every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match store.reconcile_lock().await {
                // Another instance of the fleet runs it now.
                Ok(None) => {}
                Ok(Some(_lock)) => {
                    run(&config, app_uid.as_deref(), &store, &inbox, &as_the_app).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "reconciliation skipped: the database is unavailable");
                }
            }
        }
    });
}

/// One run: each configured stack that is installed and authorized, in turn.
async fn run(
    config: &ReconcileConfig,
    app_uid: Option<&str>,
    store: &Store,
    inbox: &AnyInbox,
    as_the_app: &AsTheApp,
) {
    let since = SystemTime::now()
        .checked_sub(config.window)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    for (stack, webhook) in &config.webhooks {
        // One stack's records may not hold the others' turn for long.
        let run = reconcile_stack(stack, webhook, since, app_uid, store, inbox, as_the_app);
        match tokio::time::timeout(STACK_DEADLINE, run).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(stack = %stack, webhook = %webhook, %error, "reconciliation failed");
            }
            Err(_) => {
                tracing::warn!(stack = %stack, webhook = %webhook, "reconciliation gave up: the stack's records took too long");
            }
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The longest one stack's reconciliation may take.
const STACK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

async fn reconcile_stack(
    stack: &str,
    webhook: &str,
    since: SystemTime,
    app_uid: Option<&str>,
    store: &Store,
    inbox: &AnyInbox,
    as_the_app: &AsTheApp,
) -> Result<(), Error> {
    if !store.is_installed(stack.to_owned()).await? {
        return Ok(());
    }
    let Some(installation) = store.authorized_installation(stack.to_owned()).await? else {
        tracing::info!(
            stack,
            "not reconciled: the app holds no token for this stack's installation"
        );
        return Ok(());
    };
    let Some(call) = as_the_app.cma(&installation).await else {
        return Ok(());
    };
    let records = ContentstackRecords::with_call(&call?)?;
    // The layer's replay namespace: the app uid it binds to.
    let records = match app_uid {
        Some(app_uid) => records.with_namespace(app_uid),
        None => records,
    };
    let report = inbox
        .reconcile_contentstack(&records, webhook, since, Action::Commit)
        .await?;
    if !report.healthy {
        tracing::warn!(stack, webhook, health = %report.health, "the stack's webhook is unhealthy");
    }
    let committed = report.count("committed");
    let missing = report
        .attempts
        .iter()
        .filter(|(_, found)| found.is_missing())
        .count();
    if report.count("mismatch") > 0 {
        tracing::error!(
            stack,
            webhook,
            "deliveries the app took are not in the inbox under the ids reconciliation derives: nothing committed (is CONTENTSTACK_APP_UID the app uid the deliveries were verified with?)"
        );
    }
    if committed + missing > 0 {
        tracing::warn!(
            stack,
            webhook,
            attempts = report.attempts.len(),
            committed,
            missing,
            "reconciled: deliveries the live path never received were committed from Contentstack's records"
        );
    }
    Ok(())
}
