//! `countersign reconcile`: the providers' records of their webhook attempts against an inbox.

use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use countersign::contentstack::Region;
use countersign::reconcile::{
    ContentfulRecords, ContentstackRecords, RecordsError, RecordsErrorKind,
};
use countersign_inbox::{
    Action, DEFAULT_RETRY_HORIZON, Found, Inbox, InboxStore, PostgresInbox, ReconcileError, Report,
    SqliteInbox,
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
    #[arg(long, value_name = "URL", env = "COUNTERSIGN_INBOX")]
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

/// Which webhook's records, read how, and what to do with what is missing.
enum Job {
    Contentstack {
        records: ContentstackRecords,
        webhook: String,
        since: SystemTime,
        until: Option<SystemTime>,
        action: Action,
    },
    Contentful {
        records: ContentfulRecords,
        webhook: String,
        since: Option<SystemTime>,
        action: Action,
    },
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
    let action = match (args.commit, args.retry) {
        (true, _) => Action::Commit,
        (_, true) => Action::Retry,
        _ => Action::Report,
    };
    let job = Job::Contentstack {
        records,
        webhook: args.webhook,
        since: args.since,
        until: args.until,
        action,
    };
    reconcile(&args.inbox, job).await
}

async fn contentful(args: ContentfulArgs) -> Outcome {
    let records = ContentfulRecords::new(&args.space, args.cma_token.trim())
        .and_then(|records| records.with_base_url(&args.base_url))
        .map_err(|e| records_failed(&e))?;
    let records = match &args.inbox.namespace {
        Some(namespace) => records.with_namespace(namespace),
        None => records,
    };
    let action = if args.commit {
        Action::Commit
    } else {
        Action::Report
    };
    let job = Job::Contentful {
        records,
        webhook: args.webhook,
        since: args.since,
        action,
    };
    reconcile(&args.inbox, job).await
}

/// Runs `job` on the inbox the arguments name; prints a line for each attempt and the sum.
async fn reconcile(args: &InboxArgs, job: Job) -> Outcome {
    let horizon = args
        .horizon
        .map_or(DEFAULT_RETRY_HORIZON, Duration::from_secs);
    let report = if let Some(path) = args.inbox.strip_prefix("sqlite:") {
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
        run_job(Inbox::new(store), horizon, job).await?
    } else if args.inbox.starts_with("postgres://") || args.inbox.starts_with("postgresql://") {
        let pool = countersign_inbox::pool_of_url(&args.inbox)
            .map_err(|e| Failure::input(format!("--inbox: {e}")))?;
        let mut store = PostgresInbox::new(pool);
        if let Some(table) = &args.table {
            store = store.with_table(table).map_err(Failure::input)?;
        }
        run_job(Inbox::new(store), horizon, job).await?
    } else {
        return Err(Failure::input(
            "--inbox is sqlite:PATH or a postgres:// URL",
        ));
    };
    if !report.healthy {
        eprintln!("webhook: {}", report.health);
    }
    for (attempt, found) in &report.attempts {
        let id = attempt.delivery.as_ref().map_or_else(
            |_| "-".to_owned(),
            countersign::reconcile::RecordedDelivery::id,
        );
        let word = match found {
            Found::TenantFull => "missing\ttenant full".to_owned(),
            Found::TooOld => "missing\ttoo old to be sent again: commit it".to_owned(),
            Found::Mismatch => "missing\tanswered 2xx, yet not in the inbox".to_owned(),
            Found::Refused(status) => format!("refused\tthe backend answered {status}"),
            Found::Unusable(why) => format!("unusable\t{why}"),
            found => found.as_str().to_owned(),
        };
        print_line(&format!("{}\t{id}\t{word}", attempt.provider_id))?;
    }
    let missing = report
        .attempts
        .iter()
        .filter(|(_, found)| found.is_missing())
        .count();
    print_line(&format!(
        "{} attempts: {} present, {missing} missing, {} committed, {} retried",
        report.attempts.len(),
        report.count("present"),
        report.count("committed"),
        report.count("retried"),
    ))?;
    let (forgotten, unusable) = (report.count("forgotten"), report.count("unusable"));
    let refused = report.count("refused");
    if forgotten + unusable + refused > 0 {
        eprintln!(
            "{forgotten} older than the inbox remembers, {unusable} the record cannot give, {refused} the backend refused: neither counted missing nor committed"
        );
    }
    let mismatched = report.count("mismatch");
    if mismatched > 0 {
        eprintln!(
            "{mismatched} answered 2xx by the backend are not in the inbox: the delivery ids differ from the live path's (is --namespace the backend's? does it verify these webhooks with the space's webhook secret?), or an instance's spool has not moved them in yet. Nothing was committed or sent again"
        );
    }
    if report.any_missing() {
        return Err(Failure::Missing);
    }
    Ok(())
}

async fn run_job<St: InboxStore>(
    inbox: Inbox<St>,
    horizon: Duration,
    job: Job,
) -> Result<Report, Failure> {
    let inbox = inbox.with_retry_horizon(horizon);
    let report = match job {
        Job::Contentstack {
            records,
            webhook,
            since,
            until,
            action,
        } => {
            inbox
                .reconcile_contentstack(&records, &webhook, since, until, action)
                .await
        }
        Job::Contentful {
            records,
            webhook,
            since,
            action,
        } => {
            inbox
                .reconcile_contentful(&records, &webhook, since, action)
                .await
        }
    };
    report.map_err(|error| match error {
        ReconcileError::Records(error) => records_failed(&error),
        ReconcileError::Store(error) => unavailable("the inbox", error),
    })
}
