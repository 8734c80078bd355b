//! `countersign`: sign, verify, send and diagnose Contentstack and Contentful requests.
//!
//! The command lines are a contract (`shared/spec/cli.md`): scripts depend on their names,
//! flags, output and exit codes. Exit codes: 0 verified (or done), 1 rejected, 2 usage or input
//! error.

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

mod common;
mod contentful;
mod contentstack;
mod inspect;
mod keygen;
mod oauth;
mod reconcile;
mod request_text;
mod send;

/// Sign, verify, send and diagnose requests from Contentstack and Contentful.
#[derive(Debug, Parser)]
#[command(
    name = "countersign",
    version,
    propagate_version = true,
    args_override_self = true
)]
#[command(
    after_help = "Exit codes: 0 verified, 1 rejected (reason on stderr), 2 usage or input error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Contentful request signing (app events, app actions, webhooks, signed requests).
    #[command(subcommand)]
    Contentful(contentful::Command),
    /// Contentstack webhook signatures (RSA and HMAC) and app-tokens.
    #[command(subcommand)]
    Contentstack(contentstack::Command),
    /// Write an RSA-2048 dev key pair: private.pem, public.pem (PKCS#1) and public-keys.json.
    #[command(
        after_help = "Example:\n  countersign keygen --out dev-keys\n\n        Serve dev-keys/public-keys.json as a mock well-known endpoint, or point the backend at it."
    )]
    Keygen(keygen::KeygenArgs),
    /// Send a fresh, realistic, correctly signed request to a URL; exit 1 on a non-2xx answer.
    #[command(subcommand)]
    Send(send::Command),
    /// Run every check on a captured raw HTTP/1.1 request and name the likely cause of a failure.
    #[command(
        after_help = "Example:\n  countersign inspect --request-file failed.http --contentful-secret \"$SECRET\"\n          countersign inspect --request-file webhook.http --contentstack-key public-keys.json --json\n\n        Secrets can come from COUNTERSIGN_CONTENTFUL_SECRET and COUNTERSIGN_CONTENTSTACK_HMAC_SECRET."
    )]
    Inspect(inspect::InspectArgs),
    /// Look the providers' records of their webhook attempts up in an inbox; commit or have
    /// sent again what is missing.
    #[command(subcommand)]
    Reconcile(reconcile::Command),
}

fn main() -> ExitCode {
    let matches = values_may_begin_with_a_hyphen(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let outcome = match cli.command {
        Command::Contentful(command) => contentful::run(command),
        Command::Contentstack(command) => contentstack::run(command),
        Command::Keygen(args) => keygen::keygen(&args),
        Command::Send(command) => send::run(command),
        Command::Inspect(args) => inspect::run(&args),
        Command::Reconcile(command) => reconcile::run(command),
    };
    common::finish(outcome)
}

/// Lets every option that takes a value take one that begins with `-`: Contentful secrets
/// may (their alphabet is `[0-9a-zA-Z+/=_-]`), and so may paths, bodies, signatures and
/// tokens. The value is whatever follows the option, as with `--secret=-abc`.
fn values_may_begin_with_a_hyphen(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            if arg.get_action().takes_values() {
                arg.allow_hyphen_values(true)
            } else {
                arg
            }
        })
        .mut_subcommands(values_may_begin_with_a_hyphen)
}
