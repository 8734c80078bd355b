//! `simulate`: plays Contentstack and Contentful against a running fleet of the example
//! backends, then reads back what it recorded and prints the figures. Exit 0 when no delivery
//! was lost or recorded twice, 1 otherwise, 2 on bad arguments.
//!
//! ```text
//! cargo run -p countersign-tests --bin simulate -- \
//!   --contentstack http://127.0.0.1:3000,http://127.0.0.1:3002 \
//!   --contentstack-key dev-keys/private.pem --hmac-secret "$HMAC" --app-uid dev-app \
//!   --contentful http://127.0.0.1:3001 --contentful-secret "$SECRET" \
//!   --deliveries 1000 --seconds 60 --scale 0.1
//! ```
//!
//! The fleet must trust the key and secrets given here (`CONTENTSTACK_PUBLIC_KEY`,
//! `CONTENTSTACK_HMAC_SECRETS`, `CONTENTSTACK_APP_UID`, `CONTENTFUL_SIGNING_SECRETS`). Secrets
//! may come from the environment instead of the command line.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use countersign_core::contentful::SigningSecret;
use countersign_core::contentstack::{HmacSecret, SigningKey};
use countersign_tests::simulator::{Credentials, Fleet, Load, Report, Schedule, Simulator, run};

/// Plays Contentstack and Contentful against a fleet, then reads back what it recorded.
#[derive(Parser)]
#[command(name = "simulate")]
struct Args {
    /// marketplace-app instances (base URLs, comma-separated), in round-robin order.
    #[arg(long, value_delimiter = ',', required = true)]
    contentstack: Vec<String>,
    /// contentful-app instances (base URLs, comma-separated); none: Contentstack only.
    #[arg(long, value_delimiter = ',')]
    contentful: Vec<String>,
    /// Contentstack's private key (PEM file) whose public half the fleet trusts.
    #[arg(long)]
    contentstack_key: std::path::PathBuf,
    /// The Contentstack HMAC secret the fleet trusts.
    #[arg(long, env = "SIMULATE_HMAC_SECRET", hide_env_values = true)]
    hmac_secret: String,
    /// The Contentful signing secret the fleet trusts.
    #[arg(long, env = "SIMULATE_CONTENTFUL_SECRET", hide_env_values = true)]
    contentful_secret: Option<String>,
    /// The Contentstack app uid the fleet serves.
    #[arg(long, default_value = "dev-app")]
    app_uid: String,
    /// Deliveries in all.
    #[arg(long, default_value_t = 1000)]
    deliveries: usize,
    /// First attempts spread over this many seconds.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// The retry schedule's time scale (1.0: Contentstack's 5/25/125/625 s).
    #[arg(long, default_value_t = 0.1)]
    scale: f64,
    /// The shortest attempt timeout, in seconds (30 s x scale otherwise).
    #[arg(long, default_value_t = 2.0)]
    min_timeout: f64,
    /// Stacks (the app is installed on each first).
    #[arg(long, default_value_t = 3)]
    stacks: usize,
    /// Spaces (Contentful deliveries).
    #[arg(long, default_value_t = 2)]
    spaces: usize,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match simulate(args).await {
        Ok(report) => {
            print!("{report}");
            if report.is_clean() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("simulate: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn simulate(args: Args) -> Result<Report, String> {
    let contentful = match (&args.contentful_secret, args.contentful.is_empty()) {
        (Some(secret), _) => SigningSecret::new(secret).map_err(|e| e.to_string())?,
        (None, true) => SigningSecret::generate().map_err(|e| e.to_string())?,
        (None, false) => return Err("--contentful needs --contentful-secret".into()),
    };
    let credentials = Credentials {
        contentstack_key: SigningKey::from_file(&args.contentstack_key)
            .map_err(|e| e.to_string())?,
        contentstack_hmac: HmacSecret::new(&args.hmac_secret).map_err(|e| e.to_string())?,
        contentful,
        app_uid: args.app_uid,
    };
    let spaces = if args.contentful.is_empty() {
        0
    } else {
        args.spaces
    };
    let fleet = Fleet {
        contentstack: args.contentstack,
        contentful: args.contentful,
    };
    let schedule = Schedule::contentstack(args.scale, Duration::from_secs_f64(args.min_timeout));
    let simulator = Arc::new(Simulator::new(fleet, credentials, schedule));
    let run_id = countersign_core::random_hex(4).map_err(|e| e.to_string())?;
    let load = Load {
        deliveries: args.deliveries,
        window: Duration::from_secs_f64(args.seconds),
        stacks: (0..args.stacks.max(1))
            .map(|n| format!("bltsim{run_id}{n}"))
            .collect(),
        spaces: (0..spaces).map(|n| format!("space{run_id}{n}")).collect(),
        run: format!("sim-{run_id}"),
    };
    let outcomes = run(&simulator, &load).await?;
    // Deliveries are handled off the request path (an inbox): read back until every
    // acknowledged one is recorded, for at most READ_BACK_FOR. A stack whose installation is
    // not yet recorded opens no session: read again too.
    let since = std::time::Instant::now();
    loop {
        let last_chance = since.elapsed() >= READ_BACK_FOR;
        match simulator.read_back(&load.tenants()).await {
            Ok(recorded) => {
                let report = Report::new(&outcomes, &recorded, simulator.longest_failure_run());
                if report.lost.is_empty() || last_chance {
                    return Ok(report);
                }
            }
            Err(error) if last_chance => return Err(error),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How long the fleet is given to handle what it acknowledged.
const READ_BACK_FOR: Duration = Duration::from_secs(60);
