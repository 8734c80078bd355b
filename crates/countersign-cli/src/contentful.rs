//! `countersign contentful sign|verify|secret|access-token`.

use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use countersign_core::contentful::{
    RequestToSign, RequestVerifier, SIGNABLE_METHODS, SigningSecret, sign,
};
use http::Method;

use crate::common::{
    BodyArgs, ContextArgs, Failure, Outcome, header_map, parse_header, parse_time, print_line,
    time_or_now, unix_ms,
};
use crate::request_text::{self, Format};

/// The environment variable that can hold the signing secret(s) instead of `--secret`.
const SECRET_ENV: &str = "COUNTERSIGN_CONTENTFUL_SECRET";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Sign a request as @contentful/node-apps-toolkit's signRequest does; prints the headers to
    /// add as one JSON object, or with --format curl or http the whole request to send.
    #[command(
        after_help = "Example:\n  countersign contentful sign --secret \"$SECRET\" --method POST \\\n      \
        --path '/hooks?x=1' -H 'Content-Type: application/json' --body '{}' --space-id my-space\n\n  \
        # The same, as a curl command line to run against your backend:\n  \
        countersign contentful sign --secret \"$SECRET\" --method POST --path /contentful/events \\\n      \
        -H 'Content-Type: application/json' --body '{}' --space-id my-space \\\n      \
        --format curl --url http://127.0.0.1:3001 | sh\n\n\
        The secret can come from COUNTERSIGN_CONTENTFUL_SECRET instead of --secret."
    )]
    Sign(SignArgs),
    /// Verify a signed request; exit 0 verified, 1 rejected, 2 bad input.
    #[command(
        after_help = "Example:\n  countersign contentful verify --secret \"$OLD\" --secret \"$NEW\" --method POST \\\n      \
        --path /hooks -H 'x-contentful-signature: ...' -H 'x-contentful-signed-headers: ...' \\\n      \
        -H 'x-contentful-timestamp: 1700000000000' --body-file body.json --ttl 30\n\n\
        The secrets can come from COUNTERSIGN_CONTENTFUL_SECRET (comma-separated) instead of --secret."
    )]
    Verify(VerifyArgs),
    /// Print a new signing secret that Contentful accepts (64 characters of [0-9a-zA-Z_-]
    /// from the operating system's random source).
    #[command(
        after_help = "Example:\n  NEXT=$(countersign contentful secret)\n\n        Rotation: generate the next secret, deploy the backend verifying with both the old and the\n        next one, submit the next secret to Contentful, then drop the old one."
    )]
    Secret,
    /// Get an access token for the Content Management API as the app (the toolkit's
    /// getManagementToken) and print it on stdout; exit 0 with a token, 1 when Contentful
    /// refuses or cannot be reached (stderr says the status and reason), 2 on bad input.
    #[command(
        name = "access-token",
        after_help = "Example:\n  TOKEN=$(countersign contentful access-token --app-id 5GqqNVnhR8ZPI3ZKOvpArP \\\n      \
        --private-key app-key.pem --space-id my-space --environment-id master --key-id key-1)\n  \
        curl -H \"Authorization: Bearer $TOKEN\" https://api.contentful.com/spaces/my-space/environments/master/entries\n\n\
        --app-id is the app definition's id (the toolkit calls it appInstallationId). EU accounts: --host https://api.eu.contentful.com"
    )]
    AccessToken(AccessTokenArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AccessTokenArgs {
    /// The app definition's id.
    #[arg(long, value_name = "ID")]
    app_id: String,
    /// The app's private key: a PEM file, or the PEM itself.
    #[arg(
        long,
        value_name = "PEM",
        env = "COUNTERSIGN_CONTENTFUL_PRIVATE_KEY",
        hide_env_values = true
    )]
    private_key: String,
    /// The space.
    #[arg(long, value_name = "ID")]
    space_id: String,
    /// The environment.
    #[arg(long, value_name = "ID")]
    environment_id: String,
    /// The key's id, when the app has several keys.
    #[arg(long, value_name = "ID")]
    key_id: Option<String>,
    /// The Content Management API's base URL.
    #[arg(long, value_name = "URL", default_value = countersign::contentful::app_identity::DEFAULT_HOST)]
    host: String,
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The app's signing secret (64 characters).
    #[arg(long, env = SECRET_ENV, hide_env_values = true)]
    secret: String,
    /// The HTTP method: GET, PATCH, HEAD, POST, DELETE, OPTIONS or PUT.
    #[arg(long)]
    method: String,
    /// The request target: path and query, starting with '/'.
    #[arg(long)]
    path: String,
    /// A header to sign, 'Name: value'; may repeat.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    #[command(flatten)]
    body: BodyArgs,
    /// The signing time (RFC 3339 or Unix milliseconds); the clock's when absent.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    timestamp: Option<SystemTime>,
    #[command(flatten)]
    context: ContextArgs,
    /// What to print: the signature headers as JSON, a curl command line that sends the whole
    /// request (every -H header, the signature headers, the body), or the HTTP request itself.
    #[arg(long, value_enum, default_value = "headers")]
    format: Format,
    /// For --format curl and http: the backend's base URL, to which --path is added.
    #[arg(long, value_name = "URL", default_value = "http://localhost:3000")]
    url: String,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// A signing secret to accept; repeat for a rotation.
    #[arg(long = "secret", required = true, env = SECRET_ENV, hide_env_values = true, value_delimiter = ',')]
    secrets: Vec<String>,
    /// The HTTP method as received.
    #[arg(long)]
    method: String,
    /// The raw request target as received: path and query.
    #[arg(long)]
    path: String,
    /// A received header, 'Name: value'; may repeat.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    #[command(flatten)]
    body: BodyArgs,
    /// How many seconds a signature stays valid; 0 turns the check off.
    #[arg(long, value_name = "SECONDS", default_value_t = countersign_core::contentful::DEFAULT_TTL.as_secs())]
    ttl: u64,
    /// How many seconds ahead of the clock a timestamp may be.
    #[arg(long, value_name = "SECONDS", default_value_t = countersign_core::contentful::DEFAULT_FUTURE_SKEW.as_secs())]
    future_skew: u64,
    /// A path prefix a proxy stripped before the request reached the backend.
    #[arg(long, value_name = "PREFIX")]
    path_prefix: Option<String>,
    /// The time to verify at (RFC 3339 or Unix milliseconds); the clock's when absent.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    now: Option<SystemTime>,
}

pub(crate) fn run(command: Command) -> Outcome {
    match command {
        Command::Sign(args) => run_sign(&args),
        Command::Verify(args) => run_verify(&args),
        Command::Secret => crate::keygen::contentful_secret(),
        Command::AccessToken(args) => run_access_token(&args),
    }
}

fn run_access_token(args: &AccessTokenArgs) -> Outcome {
    use countersign::contentful::app_identity::{AccessTokenErrorKind, AppIdentity};
    use countersign_core::contentful::app_identity::AppKey;

    let key = if args.private_key.trim_start().starts_with("-----BEGIN") {
        AppKey::from_pem(&args.private_key)
    } else {
        AppKey::from_file(&args.private_key)
    }
    .map_err(|e| Failure::input(format!("--private-key: {e}")))?;
    let mut identity = AppIdentity::new(&args.app_id, key)
        .with_host(&args.host)
        .map_err(|e| Failure::input(format!("--host: {e}")))?;
    if let Some(key_id) = &args.key_id {
        identity = identity
            .with_key_id(key_id)
            .map_err(|e| Failure::input(format!("--key-id: {e}")))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::input(format!("cannot start the runtime: {e}")))?;
    let token = runtime
        .block_on(identity.access_token(&args.space_id, &args.environment_id))
        .map_err(|e| {
            let code = match e.kind() {
                AccessTokenErrorKind::Config => return Failure::input(e),
                AccessTokenErrorKind::Refused => "refused",
                AccessTokenErrorKind::RateLimited => "rate_limited",
                _ => "unavailable",
            };
            Failure::Rejected {
                code,
                message: e.to_string(),
            }
        })?;
    print_line(token.expose())
}

fn signing_secret(text: &str) -> Result<SigningSecret, Failure> {
    SigningSecret::new(text.trim()).map_err(|e| Failure::input(format!("invalid secret: {e}")))
}

fn method(text: &str) -> Result<Method, Failure> {
    let upper = text.to_ascii_uppercase();
    if !SIGNABLE_METHODS.contains(&upper.as_str()) {
        return Err(Failure::input(format!(
            "{text:?} is not a method Contentful signs ({})",
            SIGNABLE_METHODS.join(", ")
        )));
    }
    Method::from_bytes(upper.as_bytes())
        .map_err(|_| Failure::input(format!("{text:?} is not a method")))
}

fn check_path(path: &str) -> Result<(), Failure> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(Failure::input(format!(
            "the path must start with '/': {path:?}"
        )))
    }
}

fn run_sign(args: &SignArgs) -> Outcome {
    let secret = signing_secret(&args.secret)?;
    let method = method(&args.method)?;
    check_path(&args.path)?;
    let body = args.body.read()?;
    let mut request = RequestToSign::new(method, &args.path).with_body(&body);
    for (name, value) in &args.headers {
        request = request.with_header(name, value);
    }
    let context = args.context.to_context();
    let signed = sign(&secret, &request, time_or_now(args.timestamp), &context)
        .map_err(|e| Failure::input(format!("{} ({})", e.message(), e.kind())))?;
    if args.format != Format::Headers {
        let headers: Vec<(String, String)> = args
            .headers
            .iter()
            .cloned()
            .chain(signed.iter().map(|(n, v)| (n.to_owned(), v.to_owned())))
            .collect();
        let url = format!("{}{}", args.url.trim_end_matches('/'), args.path);
        let method = args.method.to_ascii_uppercase();
        return print_line(&match args.format {
            Format::Curl => {
                request_text::curl(&method, &url, &headers, &body).map_err(Failure::input)?
            }
            _ => request_text::http(&method, &url, &headers, &body).map_err(Failure::input)?,
        });
    }
    // A JSON object in the order signRequest returns the headers.
    let fields: Vec<String> = signed
        .iter()
        .map(|(name, value)| format!("{}:{}", json_string(name), json_string(value)))
        .collect();
    print_line(&format!("{{{}}}", fields.join(",")))
}

fn run_verify(args: &VerifyArgs) -> Outcome {
    let secrets = args
        .secrets
        .iter()
        .map(|s| signing_secret(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut verifier = RequestVerifier::with_secrets(secrets)
        .map_err(Failure::input)?
        .with_ttl(Duration::from_secs(args.ttl))
        .with_future_skew(Duration::from_secs(args.future_skew));
    if let Some(prefix) = &args.path_prefix {
        verifier = verifier.with_path_prefix(prefix).map_err(Failure::input)?;
    }
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| Failure::input(format!("{:?} is not a method", args.method)))?;
    let headers = header_map(&args.headers)?;
    let body = args.body.read()?;
    let now = time_or_now(args.now);

    let verified = verifier
        .diagnose()
        .verify_parts(&method, &args.path, &headers, &body, now)
        .map_err(|e| Failure::Rejected {
            code: e.kind().code(),
            message: e.message().to_owned(),
        })?;

    let mut report = serde_json::Map::new();
    report.insert("verified".into(), true.into());
    report.insert("kind".into(), verified.kind().as_str().into());
    report.insert("secret_index".into(), verified.secret_index().into());
    report.insert("timestamp".into(), verified.timestamp_ms().into());
    let age_ms = i128::from(unix_ms(now)) - i128::from(verified.timestamp_ms());
    report.insert(
        "age_ms".into(),
        serde_json::Value::from(i64::try_from(age_ms).unwrap_or(i64::MAX)),
    );
    let signed: serde_json::Map<String, serde_json::Value> = verified
        .signed_headers()
        .map(|(name, value)| (name.to_owned(), value.into()))
        .collect();
    report.insert("signed_headers".into(), signed.into());
    print_line(&serde_json::Value::Object(report).to_string())
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
