//! `countersign contentstack ...`: webhook signatures (RSA and HMAC) and app-tokens.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand, ValueEnum};
use countersign_core::contentstack::{
    AppTokenVerifier, DEFAULT_TOLERANCE, HMAC_SIGNATURE_HEADER, HmacSecret, KeySet, KeySource,
    NoKeys, RSA_SIGNATURE_HEADER, SaltLength, SigningKey, StaticKeys, Tenancy, VerifiedBy,
    VerifiedWebhook, WebhookVerifier, mint_app_token,
};
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::common::{BodyArgs, Failure, Outcome, parse_time, print_line, time_or_now};
use crate::request_text::{self, Format};

/// The environment variable that can hold HMAC secret(s) instead of `--secret`.
const HMAC_SECRET_ENV: &str = "COUNTERSIGN_CONTENTSTACK_HMAC_SECRET";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Sign a webhook as Contentstack does (RSA-PSS): the body byte for byte, or with --module
    /// and --event an envelope built around --body as its data with triggered_at of now.
    /// Prints the X-Contentstack-Request-Signature value, or with --format curl or http the
    /// whole request to send.
    #[command(
        after_help = "A webhook's body is Contentstack's envelope, a JSON object:\n  \
        {\"triggered_at\":\"2026-12-02T02:30:44.835Z\",\"module\":\"entry\",\"event\":\"publish\",\"api_key\":\"blt...\",\"data\":{...}}\n\
        triggered_at is RFC 3339 in UTC with milliseconds and Z, and recent: the RSA method's verifiers\n\
        refuse a missing one, epoch numbers, and one older than their tolerance (the HMAC method\n\
        checks t of its own header instead). --module and --event build it.\n\n\
        Example:\n  \
        # Sign a fresh envelope and send it with curl:\n  \
        countersign contentstack sign --private-key dev/private.pem --module entry --event publish \\\n      \
        --api-key blt0000000000000001 --body '{\"entry\":{\"uid\":\"e1\"}}' \\\n      \
        --format curl --url http://127.0.0.1:3000/webhooks/contentstack | sh\n\n  \
        # Sign a body you wrote (its triggered_at must be recent):\n  \
        countersign contentstack sign --private-key dev/private.pem --body-file webhook.json"
    )]
    Sign(SignArgs),
    /// Verify an RSA-signed webhook: signature, then triggered_at; exit 0 verified, 1 rejected.
    #[command(
        after_help = "Example:\n  countersign contentstack verify --public-key public-keys.json \\\n      \
        --signature \"v1=...\" --body-file webhook.json --tolerance 300"
    )]
    Verify(VerifyArgs),
    /// Sign a webhook with the HMAC method (the body byte for byte, or with --module and --event
    /// an envelope built around --body as its data); prints the x-contentstack-hmac-signature
    /// value, or with --format curl or http the whole request to send.
    #[command(after_help = "Example:\n  \
        # Sign a fresh envelope for your stack and send it with curl:\n  \
        countersign contentstack hmac-sign --secret \"$SECRET\" --module entry --event publish \\\n      \
        --api-key blt0000000000000001 --body '{\"entry\":{\"uid\":\"e1\"}}' \\\n      \
        --format curl --url http://127.0.0.1:3000/webhooks/contentstack | sh\n\n  \
        # Sign a captured body again, byte for byte, at a time of your choice:\n  \
        countersign contentstack hmac-sign --secret \"$SECRET\" --body-file webhook.json --timestamp 1721897326\n\n\
        The secret can come from COUNTERSIGN_CONTENTSTACK_HMAC_SECRET instead of --secret.")]
    HmacSign(HmacSignArgs),
    /// Verify an HMAC-signed webhook; exit 0 verified, 1 rejected.
    #[command(
        after_help = "Example:\n  countersign contentstack hmac-verify --secret \"$OLD\" --secret \"$NEW\" \\\n      \
        --signature \"t=1721897326,v1=...\" --body-file webhook.json\n\n\
        The secrets can come from COUNTERSIGN_CONTENTSTACK_HMAC_SECRET (comma-separated) instead of --secret."
    )]
    HmacVerify(HmacVerifyArgs),
    /// Mint and verify app-tokens of signed UI locations.
    #[command(subcommand)]
    AppToken(AppTokenCommand),
    /// Authorize the app and get its tokens with Developer Hub's OAuth: the URL, the code
    /// exchange, the refresh.
    #[command(subcommand)]
    Oauth(crate::oauth::Command),
}

#[derive(Debug, Subcommand)]
pub(crate) enum AppTokenCommand {
    /// Mint an RS256 app-token as Contentstack does; prints the JWT.
    #[command(
        after_help = "Example:\n  countersign contentstack app-token mint --private-key dev/private.pem \\\n      \
        --claims '{\"app_uid\":\"a\",\"installation_uid\":\"i\",\"organization_uid\":\"o\",\"user_uid\":\"u\",\"stack_api_key\":\"blt1\"}'"
    )]
    Mint(MintArgs),
    /// Verify an app-token; prints its claims as one JSON object.
    #[command(
        after_help = "Example:\n  countersign contentstack app-token verify --public-key public-keys.json --token \"$JWT\""
    )]
    Verify(AppTokenVerifyArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Salt {
    /// 32 bytes, what Contentstack's docs say today.
    Digest,
    /// The maximum (222 for RSA-2048), Node's default when signing.
    Max,
}

impl From<Salt> for SaltLength {
    fn from(salt: Salt) -> Self {
        match salt {
            Salt::Digest => SaltLength::Digest,
            Salt::Max => SaltLength::Max,
        }
    }
}

#[derive(Debug, Args)]
#[command(
    mut_arg("body", |arg| arg.help(
        "The body to sign, as text; with --module and --event, the envelope's data (JSON)"
    )),
    mut_arg("body_file", |arg| arg.help(
        "The body to sign, read from a file and used byte for byte; with --module and --event, \
         the envelope's data (JSON)"
    ))
)]
pub(crate) struct SignArgs {
    /// The private key, a PEM file (PKCS#1 or PKCS#8).
    #[arg(long, value_name = "PEM")]
    private_key: PathBuf,
    #[command(flatten)]
    body: BodyArgs,
    /// The RSA-PSS salt length.
    #[arg(long, value_enum, default_value_t = Salt::Digest)]
    salt_length: Salt,
    #[command(flatten)]
    envelope: EnvelopeArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// The stack `--api-key` stands for when it is not given: no stack's.
pub(crate) const PLACEHOLDER_API_KEY: &str = "blt0000000000000000";

/// Contentstack's envelope around the body (`sign`, `hmac-sign`).
#[derive(Debug, Args)]
pub(crate) struct EnvelopeArgs {
    /// Build the envelope: its module (entry, asset, ...), with --event.
    #[arg(long, requires = "event")]
    module: Option<String>,
    /// Build the envelope: its event (publish, create, ...), with --module.
    #[arg(long, requires = "module")]
    event: Option<String>,
    /// Build the envelope: its api_key (the stack).
    #[arg(long, requires = "module", default_value = PLACEHOLDER_API_KEY)]
    api_key: String,
}

impl EnvelopeArgs {
    /// The body to sign: the envelope around `data`, triggered `at`, with --module and --event
    /// (and a word on stderr when its stack is the placeholder), else `data` as it is.
    fn body(&self, data: Vec<u8>, at: SystemTime) -> Result<Vec<u8>, Failure> {
        match (&self.module, &self.event) {
            (Some(module), Some(event)) => {
                warn_placeholder(&self.api_key);
                envelope(module, event, &self.api_key, &data, at)
            }
            _ => Ok(data),
        }
    }

    /// Whether the envelope is built here.
    fn builds(&self) -> bool {
        self.module.is_some()
    }
}

/// Says on stderr that `api_key` is the placeholder: a receiver that binds its secrets or
/// allows its stacks refuses a delivery for no stack of its own.
pub(crate) fn warn_placeholder(api_key: &str) {
    if api_key == PLACEHOLDER_API_KEY {
        eprintln!(
            "note: the envelope's api_key is the placeholder {PLACEHOLDER_API_KEY}; a receiver that binds its HMAC secret to a stack or allows only its stacks refuses it: pass --api-key <your stack's API key>"
        );
    }
}

/// What `sign` and `hmac-sign` print, and where a printed request goes.
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// What to print: the signature header's value, a curl command line that sends the whole
    /// request, or the HTTP request itself.
    #[arg(long, value_enum, default_value = "headers")]
    format: Format,
    /// For --format curl and http: where to send it.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://localhost:3000/webhooks/contentstack"
    )]
    url: String,
}

impl OutputArgs {
    /// Prints the signature `value` of `header`, or the whole request with it.
    fn print(&self, header: &str, value: String, body: &[u8]) -> Outcome {
        let headers = [
            ("Content-Type".to_owned(), "application/json".to_owned()),
            (header.to_owned(), value.clone()),
        ];
        print_line(&match self.format {
            Format::Headers => value,
            Format::Curl => {
                request_text::curl("POST", &self.url, &headers, body).map_err(Failure::input)?
            }
            Format::Http => {
                request_text::http("POST", &self.url, &headers, body).map_err(Failure::input)?
            }
        })
    }
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The public key: PKCS#1 PEM, SPKI PEM or a public-keys.json.
    #[arg(long, value_name = "FILE")]
    public_key: PathBuf,
    /// The X-Contentstack-Request-Signature value.
    #[arg(long, value_name = "VALUE")]
    signature: String,
    #[command(flatten)]
    body: BodyArgs,
    #[command(flatten)]
    check: CheckArgs,
}

/// How a delivery is judged: its age, the time, the JSON fallback (`verify`, `hmac-verify`).
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// How many seconds old the signed time (triggered_at, or t of the HMAC header) may be.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TOLERANCE.as_secs())]
    tolerance: u64,
    /// The time to verify at (RFC 3339 or Unix milliseconds); the clock's when absent.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    now: Option<SystemTime>,
    /// When the raw body fails, verify its JSON re-serialization (JSON.stringify(JSON.parse(body))).
    #[arg(long)]
    json_fallback: bool,
}

impl CheckArgs {
    /// A verifier with this tolerance and fallback.
    fn verifier(&self) -> WebhookVerifier {
        WebhookVerifier::new()
            .with_tolerance(Duration::from_secs(self.tolerance))
            .with_json_fallback(self.json_fallback)
    }
}

#[derive(Debug, Args)]
#[command(
    mut_arg("body", |arg| arg.help(
        "The body to sign, as text; with --module and --event, the envelope's data (JSON)"
    )),
    mut_arg("body_file", |arg| arg.help(
        "The body to sign, read from a file and used byte for byte; with --module and --event, \
         the envelope's data (JSON)"
    ))
)]
pub(crate) struct HmacSignArgs {
    /// The HMAC secret.
    #[arg(long, env = HMAC_SECRET_ENV, hide_env_values = true)]
    secret: String,
    #[command(flatten)]
    body: BodyArgs,
    /// The signing time, t of the header: Unix seconds, not milliseconds (or RFC 3339); the
    /// clock's when absent.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    timestamp: Option<SystemTime>,
    #[command(flatten)]
    envelope: EnvelopeArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct HmacVerifyArgs {
    /// An HMAC secret to accept; repeat for a rotation.
    #[arg(long = "secret", required = true, env = HMAC_SECRET_ENV, hide_env_values = true, value_delimiter = ',')]
    secrets: Vec<String>,
    /// The x-contentstack-hmac-signature value.
    #[arg(long, value_name = "VALUE")]
    signature: String,
    #[command(flatten)]
    body: BodyArgs,
    #[command(flatten)]
    check: CheckArgs,
}

#[derive(Debug, Args)]
pub(crate) struct MintArgs {
    /// The private key, a PEM file (PKCS#1 or PKCS#8).
    #[arg(long, value_name = "PEM")]
    private_key: PathBuf,
    /// The claims, a JSON object (app_uid, installation_uid, organization_uid, user_uid,
    /// stack_api_key, ...); exp and iat are added unless given.
    #[arg(long, value_name = "JSON")]
    claims: String,
    /// Seconds until the token expires.
    #[arg(long, value_name = "SECONDS", default_value_t = countersign_core::contentstack::APP_TOKEN_LIFETIME.as_secs())]
    expires_in: u64,
    /// The minting time (RFC 3339 or Unix milliseconds); the clock's when absent.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    now: Option<SystemTime>,
}

#[derive(Debug, Args)]
pub(crate) struct AppTokenVerifyArgs {
    /// The public key: PKCS#1 PEM, SPKI PEM or a public-keys.json.
    #[arg(long, value_name = "FILE")]
    public_key: PathBuf,
    /// The app-token.
    #[arg(long, value_name = "JWT")]
    token: String,
    /// Seconds of clock difference exp and nbf tolerate.
    #[arg(long, value_name = "SECONDS", default_value_t = countersign_core::contentstack::DEFAULT_LEEWAY.as_secs())]
    leeway: u64,
    /// The time to verify at (RFC 3339 or Unix milliseconds); the clock's when absent.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    now: Option<SystemTime>,
}

pub(crate) fn run(command: Command) -> Outcome {
    match command {
        Command::Sign(args) => sign(&args),
        Command::Verify(args) => verify(&args),
        Command::HmacSign(args) => hmac_sign(&args),
        Command::HmacVerify(args) => hmac_verify(&args),
        Command::AppToken(AppTokenCommand::Mint(args)) => mint(&args),
        Command::AppToken(AppTokenCommand::Verify(args)) => app_token_verify(&args),
        Command::Oauth(command) => crate::oauth::run(command),
    }
}

/// Unix seconds, or an RFC 3339 timestamp.
fn parse_seconds(text: &str) -> Result<SystemTime, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text.parse().map_err(|_| format!("{text} is too large"))?;
        if secs >= 100_000_000_000 {
            return Err(format!(
                "{text} looks like milliseconds; t is Unix seconds ({})",
                secs / 1000
            ));
        }
        return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    }
    parse_time(text)
}

fn signing_key(path: &PathBuf) -> Result<SigningKey, Failure> {
    SigningKey::from_file(path).map_err(Failure::input)
}

fn public_keys(path: &PathBuf) -> Result<KeySet, Failure> {
    KeySet::from_file(path).map_err(Failure::input)
}

fn one_header(name: &'static str, value: &str) -> Result<HeaderMap, Failure> {
    let value = HeaderValue::from_str(value.trim()).map_err(|_| {
        Failure::input(format!(
            "the signature is not a valid header value for {name}"
        ))
    })?;
    let mut headers = HeaderMap::new();
    headers.insert(name, value);
    Ok(headers)
}

fn rejected(code: &'static str, message: &str) -> Failure {
    Failure::Rejected {
        code,
        message: message.to_owned(),
    }
}

fn sign(args: &SignArgs) -> Outcome {
    let key = signing_key(&args.private_key)?;
    let salt = SaltLength::from(args.salt_length);
    let body = args.envelope.body(args.body.read()?, SystemTime::now())?;
    if !args.envelope.builds() {
        // Signed all the same (a test may want it), but said: a verifier refuses it.
        if let Err(error) = countersign_core::contentstack::triggered_at(&body) {
            eprintln!(
                "warning: {} ({}): an RSA verifier will refuse this body; --module and --event build an envelope",
                error.message(),
                error.kind()
            );
        }
    }
    let value = key.sign_webhook(&body, salt).map_err(Failure::input)?;
    args.output.print(RSA_SIGNATURE_HEADER, value, &body)
}

/// Contentstack's envelope around `data` (JSON; a sample entry when empty), triggered `at`.
pub(crate) fn envelope(
    module: &str,
    event: &str,
    api_key: &str,
    data: &[u8],
    at: SystemTime,
) -> Result<Vec<u8>, Failure> {
    let data: Value = if data.is_empty() {
        json!({"entry": {"uid": "blt0000000000000001", "title": "Hello", "locale": "en-us"}})
    } else {
        serde_json::from_slice(data)
            .map_err(|e| Failure::input(format!("the envelope's data is not JSON: {e}")))?
    };
    Ok(
        countersign_core::contentstack::WebhookBody::new(module, event)
            .with_api_key(api_key)
            .with_data(&data)
            .to_bytes(at),
    )
}

fn verify(args: &VerifyArgs) -> Outcome {
    let keys = public_keys(&args.public_key)?;
    let body = args.body.read()?;
    let headers = one_header(RSA_SIGNATURE_HEADER, &args.signature)?;
    let keys = StaticKeys::new(keys);
    deliver(
        &args.check.verifier(),
        &headers,
        body,
        &keys,
        time_or_now(args.check.now),
    )
}

fn hmac_sign(args: &HmacSignArgs) -> Outcome {
    let secret = HmacSecret::new(&args.secret).map_err(Failure::input)?;
    // One time for the envelope's triggered_at and the header's t.
    let at = time_or_now(args.timestamp);
    let body = args.envelope.body(args.body.read()?, at)?;
    let value = secret.sign(&body, at);
    args.output.print(HMAC_SIGNATURE_HEADER, value, &body)
}

fn hmac_verify(args: &HmacVerifyArgs) -> Outcome {
    let mut verifier = args.check.verifier().with_rsa(false);
    for secret in &args.secrets {
        verifier = verifier.with_hmac_secret(HmacSecret::new(secret).map_err(Failure::input)?);
    }
    let headers = one_header(HMAC_SIGNATURE_HEADER, &args.signature)?;
    deliver(
        &verifier,
        &headers,
        args.body.read()?,
        &NoKeys,
        time_or_now(args.check.now),
    )
}

/// Runs the core's entry point, as the layers do, and prints its verdict.
fn deliver(
    verifier: &WebhookVerifier,
    headers: &HeaderMap,
    body: Vec<u8>,
    keys: &impl KeySource,
    now: SystemTime,
) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Failure::input(format!("cannot start a runtime: {e}")))?;
    let verdict = runtime
        .block_on(verifier.verify(headers, body.into(), keys, &Tenancy::new(), now))
        .map_err(|e| rejected(e.kind().code(), e.message()))?;
    print_line(&report(&verdict).to_string())
}

fn report(verified: &VerifiedWebhook) -> Value {
    let mut out = json!({ "verified": true });
    match verified.verified_by() {
        VerifiedBy::Rsa {
            key_index,
            key_fingerprint,
            element,
            salt,
        } => {
            out["method"] = "rsa".into();
            out["key_index"] = (*key_index).into();
            out["key_fingerprint"] = key_fingerprint.as_str().into();
            out["element"] = (*element).into();
            out["salt_length"] = salt.name().into();
        }
        VerifiedBy::Hmac {
            secret_index,
            element,
        } => {
            out["method"] = "hmac".into();
            out["secret_index"] = (*secret_index).into();
            out["element"] = (*element).into();
        }
        _ => {}
    }
    out["reencoded"] = verified.reencoded().into();
    for (name, value) in [
        ("triggered_at", verified.triggered_at().map(str::to_owned)),
        ("module", verified.module().map(|m| m.to_string())),
        ("event", verified.event().map(|e| e.to_string())),
        ("api_key", verified.api_key().map(str::to_owned)),
    ] {
        if let Some(value) = value {
            out[name] = value.into();
        }
    }
    out
}

fn mint(args: &MintArgs) -> Outcome {
    let key = signing_key(&args.private_key)?;
    let claims: Value = serde_json::from_str(&args.claims)
        .map_err(|e| Failure::input(format!("--claims is not JSON: {e}")))?;
    let token = mint_app_token(
        &key,
        &claims,
        time_or_now(args.now),
        Duration::from_secs(args.expires_in),
    )
    .map_err(Failure::input)?;
    print_line(&token)
}

fn app_token_verify(args: &AppTokenVerifyArgs) -> Outcome {
    let keys = public_keys(&args.public_key)?;
    let claims = AppTokenVerifier::new()
        .with_leeway(Duration::from_secs(args.leeway))
        .verify(args.token.trim(), &keys, time_or_now(args.now))
        .map_err(|e| rejected(e.kind().code(), e.message()))?;
    let claims = serde_json::to_value(&claims)
        .map_err(|e| Failure::input(format!("cannot print the claims: {e}")))?;
    print_line(&claims.to_string())
}
