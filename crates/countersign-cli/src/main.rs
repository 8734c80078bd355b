//! `countersign`: sign, verify, send and diagnose Contentstack and Contentful requests.
//!
//! The command lines are a contract (`shared/spec/cli.md`): scripts depend on their names,
//! flags, output and exit codes. Exit codes: 0 verified (or done), 1 rejected, 2 usage or input
//! error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod common;
mod contentful;
mod contentstack;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Contentful(command) => contentful::run(command),
        Command::Contentstack(command) => contentstack::run(command),
    };
    common::finish(outcome)
}
