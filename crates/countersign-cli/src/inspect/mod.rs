//! `countersign inspect`: run every check on a captured request and name the likely cause of a
//! failure.
//!
//! - `http`: the captured request, parsed from its raw bytes;
//! - `diagnose`: the core's checks, run again under changed assumptions to name a cause;
//! - `render`: the report, for people or as JSON.

mod diagnose;
mod http;
mod render;

use std::path::PathBuf;
use std::time::SystemTime;

use clap::Args;
use countersign_core::contentstack::{DEFAULT_TOLERANCE, KeySet};

use crate::common::{Failure, Outcome, parse_time, time_or_now};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("verifier").required(true).args(["contentful_secret", "contentstack_key", "contentstack_hmac_secret"])))]
pub(crate) struct InspectArgs {
    /// The raw HTTP/1.1 request as captured: request line, headers, blank line, body.
    #[arg(long, value_name = "FILE")]
    request_file: PathBuf,
    /// Inspect as a Contentful request signed with one of these secrets.
    #[arg(
        long,
        value_name = "S",
        env = "COUNTERSIGN_CONTENTFUL_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    contentful_secret: Vec<String>,
    /// Inspect as a Contentstack RSA-signed webhook: PKCS#1 PEM, SPKI PEM or public-keys.json.
    #[arg(long, value_name = "FILE")]
    contentstack_key: Option<PathBuf>,
    /// Inspect as a Contentstack HMAC-signed webhook with one of these secrets.
    #[arg(
        long,
        value_name = "S",
        env = "COUNTERSIGN_CONTENTSTACK_HMAC_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    contentstack_hmac_secret: Vec<String>,
    /// Contentful's time-to-live in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = countersign_core::contentful::DEFAULT_TTL.as_secs())]
    ttl: u64,
    /// Contentstack's tolerance in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TOLERANCE.as_secs())]
    tolerance: u64,
    /// The time to judge freshness at (RFC 3339 or Unix milliseconds); the clock's when absent.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    now: Option<SystemTime>,
    /// Print one JSON object instead of the report for people.
    #[arg(long)]
    json: bool,
}

/// One check and its outcome.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
    causes: Vec<String>,
    /// The rejection, when the request does not verify.
    rejected: Option<(&'static str, String)>,
}

impl Report {
    fn check(&mut self, name: &'static str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            ok,
            detail: detail.into(),
        });
    }
}

pub(crate) fn run(args: &InspectArgs) -> Outcome {
    let raw = std::fs::read(&args.request_file)
        .map_err(|e| Failure::input(format!("cannot read {}: {e}", args.request_file.display())))?;
    let request = http::parse_request(&raw).map_err(|e| {
        Failure::input(format!(
            "{} is not an HTTP request: {e}",
            args.request_file.display()
        ))
    })?;
    let now = time_or_now(args.now);
    let mut report = Report::default();
    report.check(
        "request",
        true,
        format!(
            "{} {} ({} header(s), {} body bytes)",
            request.method,
            request.target,
            request.headers.len(),
            request.body.len()
        ),
    );
    if !args.contentful_secret.is_empty() {
        diagnose::contentful(args, &request, now, &mut report)?;
    } else if let Some(path) = &args.contentstack_key {
        let keys = KeySet::from_file(path).map_err(Failure::input)?;
        diagnose::contentstack(args, &request, now, Some(&keys), &mut report)?;
    } else {
        diagnose::contentstack(args, &request, now, None, &mut report)?;
    }
    render::print_report(&report, args.json)?;
    match report.rejected {
        None => Ok(()),
        Some((code, message)) => Err(Failure::Rejected { code, message }),
    }
}
