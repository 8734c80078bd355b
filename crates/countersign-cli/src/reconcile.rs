//! `countersign reconcile`: the providers' records of their webhook attempts against an inbox.

use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use countersign::contentstack::Region;
use countersign::reconcile::{
    Attempt, ContentfulRecords, ContentstackRecords, RecordsError, RecordsErrorKind,
};
use countersign_inbox::{
    DEFAULT_RETRY_HORIZON, Found, Inbox, InboxStore, PostgresInbox, SqliteInbox,
};

use crate::common::{Failure, Outcome, parse_time, print_line};

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// A Contentstack stack webhook's executions (30 days) against the inbox.
    #[command(
        after_help = "Example:\n  countersign reconcile contentstack --region eu --api-key blt123 --management-token \"$CS_TOKEN\" \\\n      --webhook blt456 --since 2026-12-07T06:00:00Z --inbox sqlite:data/inbox.sqlite3 --commit\n\nOne line per execution: its uid, the delivery id, present | missing | committed | retried\n(| forgotten: older than --horizon | unusable: the record cannot give it, and why).\nExit codes: 0 nothing missing at the end, 1 something is, 2 bad input, 3 the provider or the\ninbox cannot be read."
    )]
    Contentstack(ContentstackArgs),
    /// A Contentful space webhook's recent calls (the last 500) against the inbox.
    #[command(
        after_help = "Example:\n  countersign reconcile contentful --space abc123 --cma-token \"$CMA_TOKEN\" --webhook 0x1 \\\n      --inbox postgres://app@db/app --table contentful_app_inbox --commit\n\nExit codes: 0 nothing missing at the end, 1 something is, 2 bad input, 3 the provider or the\ninbox cannot be read."
    )]
    Contentful(ContentfulArgs),
}

/// What both providers' commands share: the inbox and how to treat what is missing.
#[derive(Debug, Args)]
pub(crate) struct InboxArgs {
    /// The inbox: `sqlite:PATH`, or a `postgres://` URL (TLS as its `sslmode` says).
    #[arg(long, value_name = "URL")]
    inbox: String,
    /// The inbox's table in PostgreSQL (the examples: `contentful_app_inbox`,
    /// `marketplace_app_inbox`).
    #[arg(long, value_name = "T")]
    table: Option<String>,
    /// The live verifier's replay namespace, in which delivery ids are derived.
    #[arg(long, value_name = "N")]
    namespace: Option<String>,
    /// How long the inbox remembers a handled delivery, in seconds (its retry horizon, 3600 by
    /// default): an older attempt is reported `forgotten`, never committed.
    #[arg(long, value_name = "SECONDS")]
    horizon: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct ContentstackArgs {
    /// The region (NA, EU, AU, AZURE_NA, AZURE_EU, GCP_NA, GCP_EU) or a base URL.
    #[arg(long, value_name = "R")]
    region: String,
    /// The stack's api key.
    #[arg(long, value_name = "STACK")]
    api_key: String,
    /// A stack management token.
    #[arg(
        long,
        value_name = "T",
        env = "COUNTERSIGN_CONTENTSTACK_MANAGEMENT_TOKEN",
        conflicts_with = "oauth_token",
        required_unless_present = "oauth_token"
    )]
    management_token: Option<String>,
    /// An OAuth access token of the app's installation on the stack.
    #[arg(long, value_name = "T", env = "COUNTERSIGN_CONTENTSTACK_OAUTH_TOKEN")]
    oauth_token: Option<String>,
    /// The webhook's uid.
    #[arg(long, value_name = "UID")]
    webhook: String,
    /// The window's start (RFC 3339 or Unix milliseconds).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: SystemTime,
    /// The window's end; now when absent.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<SystemTime>,
    #[command(flatten)]
    inbox: InboxArgs,
    /// Commit what is missing into the inbox, from the record.
    #[arg(long, conflicts_with = "retry")]
    commit: bool,
    /// Ask Contentstack to send what is missing again (the webhook's endpoint must be up).
    #[arg(long)]
    retry: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ContentfulArgs {
    /// The space.
    #[arg(long, value_name = "SPACE")]
    space: String,
    /// A Content Management API token (or an app identity's access token) for the space.
    #[arg(long, value_name = "T", env = "COUNTERSIGN_CONTENTFUL_CMA_TOKEN")]
    cma_token: String,
    /// The webhook's id.
    #[arg(long, value_name = "ID")]
    webhook: String,
    /// The window's start (RFC 3339 or Unix milliseconds); every call Contentful keeps when
    /// absent.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<SystemTime>,
    #[command(flatten)]
    inbox: InboxArgs,
    /// Commit what is missing into the inbox, from the record.
    #[arg(long)]
    commit: bool,
    /// The Content Management API's base URL.
    #[arg(long, value_name = "URL", default_value = countersign::reconcile::CONTENTFUL_CMA)]
    base_url: String,
}

/// Exit 3: the provider or the inbox cannot be read.
fn unavailable(what: &str, message: impl std::fmt::Display) -> Failure {
    Failure::Unavailable(format!("{what}: {message}"))
}

/// A setting that cannot be used is bad input (exit 2); anything else, the provider's records
/// cannot be read (exit 3).
fn records_failed(error: &RecordsError) -> Failure {
    if error.kind() == RecordsErrorKind::Misconfigured {
        Failure::input(error.message())
    } else {
        unavailable(
            "the provider's records",
            format!("{}: {}", error.kind().reason().code, error.message()),
        )
    }
}

pub(crate) fn run(command: Command) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::input(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        match command {
            Command::Contentstack(args) => contentstack(args).await,
            Command::Contentful(args) => contentful(args).await,
        }
    })
}

async fn contentstack(args: ContentstackArgs) -> Outcome {
    let region: Region = args.region.parse().map_err(Failure::input)?;
    let records = match (&args.management_token, &args.oauth_token) {
        (Some(token), _) => {
            ContentstackRecords::with_management_token(&region, &args.api_key, token.trim())
        }
        (None, Some(token)) => {
            ContentstackRecords::with_oauth_token(&region, &args.api_key, token.trim())
        }
        (None, None) => {
            return Err(Failure::input(
                "--management-token or --oauth-token is needed",
            ));
        }
    }
    .map_err(|e| records_failed(&e))?;
    let records = match &args.inbox.namespace {
        Some(namespace) => records.with_namespace(namespace),
        None => records,
    };
    let state = records
        .webhook_state(&args.webhook)
        .await
        .map_err(|e| records_failed(&e))?;
    if state.disabled {
        eprintln!(
            "webhook {}: disabled (by hand or by the circuit breaker): nothing is sent or recorded until it is enabled",
            args.webhook
        );
    }
    let attempts = records
        .executions(&args.webhook, args.since, args.until)
        .await
        .map_err(|e| records_failed(&e))?;
    let retry = args.retry.then_some((&records, args.webhook.as_str()));
    reconcile(&args.inbox, &attempts, args.commit, retry).await
}

async fn contentful(args: ContentfulArgs) -> Outcome {
    let records = ContentfulRecords::new(&args.space, args.cma_token.trim())
        .and_then(|records| records.with_base_url(&args.base_url))
        .map_err(|e| records_failed(&e))?;
    let records = match &args.inbox.namespace {
        Some(namespace) => records.with_namespace(namespace),
        None => records,
    };
    let health = records
        .health(&args.webhook)
        .await
        .map_err(|e| records_failed(&e))?;
    if !health.is_healthy() {
        eprintln!(
            "webhook {}: {} of its {} recent calls were answered 2xx",
            args.webhook, health.healthy, health.total
        );
    }
    let attempts = records
        .calls(&args.webhook, args.since)
        .await
        .map_err(|e| records_failed(&e))?;
    reconcile(&args.inbox, &attempts, args.commit, None).await
}

/// Looks the attempts up in the inbox the arguments name, prints a line for each and the sum.
async fn reconcile(
    args: &InboxArgs,
    attempts: &[Attempt],
    commit: bool,
    retry: Option<(&ContentstackRecords, &str)>,
) -> Outcome {
    let horizon = args
        .horizon
        .map_or(DEFAULT_RETRY_HORIZON, Duration::from_secs);
    let found = if let Some(path) = args.inbox.strip_prefix("sqlite:") {
        if args.table.is_some() {
            return Err(Failure::input(
                "--table names a PostgreSQL table; a SQLite inbox has one",
            ));
        }
        if !std::path::Path::new(path).exists() {
            return Err(unavailable(
                "the inbox",
                format!("no SQLite inbox at {path}"),
            ));
        }
        let store = SqliteInbox::open(path).map_err(|e| unavailable("the inbox", e))?;
        find(Inbox::new(store), horizon, attempts, commit).await?
    } else if args.inbox.starts_with("postgres://") || args.inbox.starts_with("postgresql://") {
        let pool = countersign_inbox::pool_of_url(&args.inbox)
            .map_err(|e| Failure::input(format!("--inbox: {e}")))?;
        let mut store = PostgresInbox::new(pool);
        if let Some(table) = &args.table {
            store = store.with_table(table).map_err(Failure::input)?;
        }
        find(Inbox::new(store), horizon, attempts, commit).await?
    } else {
        return Err(Failure::input(
            "--inbox is sqlite:PATH or a postgres:// URL",
        ));
    };
    let (mut present, mut missing, mut committed, mut retried) = (0, 0, 0, 0);
    let (mut forgotten, mut unusable) = (0, 0);
    for (attempt, found) in attempts.iter().zip(found) {
        let id = attempt.delivery.as_ref().map_or_else(
            |_| "-".to_owned(),
            countersign::reconcile::RecordedDelivery::id,
        );
        let word = match (&found, retry) {
            (Found::Missing, Some((records, webhook))) => {
                records
                    .retry(webhook, &attempt.provider_id)
                    .await
                    .map_err(|e| records_failed(&e))?;
                retried += 1;
                "retried".to_owned()
            }
            (Found::Present, _) => {
                present += 1;
                "present".to_owned()
            }
            (Found::Committed, _) => {
                committed += 1;
                "committed".to_owned()
            }
            (Found::Missing | Found::TenantFull, _) => {
                missing += 1;
                if found == Found::TenantFull {
                    "missing\ttenant full".to_owned()
                } else {
                    "missing".to_owned()
                }
            }
            (Found::Forgotten, _) => {
                forgotten += 1;
                "forgotten".to_owned()
            }
            (Found::Unusable(why), _) => {
                unusable += 1;
                format!("unusable\t{why}")
            }
        };
        print_line(&format!("{}\t{id}\t{word}", attempt.provider_id))?;
    }
    print_line(&format!(
        "{} attempts: {present} present, {missing} missing, {committed} committed, {retried} retried",
        attempts.len()
    ))?;
    if forgotten + unusable > 0 {
        eprintln!(
            "{forgotten} older than the inbox remembers (--horizon), {unusable} the record cannot give: neither counted missing nor committed"
        );
    }
    if missing > 0 {
        return Err(Failure::Missing);
    }
    Ok(())
}

async fn find<St: InboxStore>(
    inbox: Inbox<St>,
    horizon: Duration,
    attempts: &[Attempt],
    commit: bool,
) -> Result<Vec<Found>, Failure> {
    inbox
        .with_retry_horizon(horizon)
        .reconcile(attempts, commit)
        .await
        .map_err(|e| unavailable("the inbox", e))
}
