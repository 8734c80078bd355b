//! `countersign send contentstack|contentful URL`: fresh, realistic, correctly signed requests.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use countersign_core::contentful::{self, RequestToSign, SigningSecret, sign};
use countersign_core::contentstack::{
    HMAC_SIGNATURE_HEADER, HmacSecret, RSA_SIGNATURE_HEADER, SaltLength, SigningKey,
};
use countersign_core::replay::REPLAY_HEADER;
use http::Method;

use crate::common::{BodyArgs, ContextArgs, Failure, Outcome, parse_header, print_line};

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Post a webhook signed as Contentstack signs it (triggered_at of now, a real envelope).
    #[command(
        after_help = "Example:\n  countersign send contentstack http://127.0.0.1:3000/webhooks/contentstack \\\n      \
        --private-key data/dev-keys/private.pem --event publish --module entry \\\n      \
        --body '{\"entry\":{\"uid\":\"blt1\",\"title\":\"Hello\"}}'"
    )]
    Contentstack(ContentstackArgs),
    /// Send a request signed as Contentful signs it.
    #[command(
        after_help = "Example:\n  countersign send contentful http://127.0.0.1:3001/contentful/webhooks --secret \"$SECRET\" \\\n      \
        --body '{\"sys\":{\"id\":\"e1\"}}' --space-id my-space --topic ContentManagement.Entry.publish\n\n\
        The secret can come from COUNTERSIGN_CONTENTFUL_SECRET instead of --secret."
    )]
    Contentful(ContentfulArgs),
}

#[derive(Debug, Args)]
#[command(
    mut_arg("body", |arg| arg.help(
        "The envelope's data, JSON; the webhook's body is the envelope built around it, with \
         triggered_at of now (a sample entry when absent)"
    )),
    mut_arg("body_file", |arg| arg.help(
        "The envelope's data, read from a file as JSON (not sent byte for byte: the body is \
         the envelope built around it)"
    ))
)]
pub(crate) struct ContentstackArgs {
    /// Where to post.
    url: String,
    /// The private key to sign with (PEM); the backend must trust its public half.
    #[arg(long, value_name = "PEM", required_unless_present = "hmac_secret")]
    private_key: Option<PathBuf>,
    /// Sign with the HMAC method and this secret instead of RSA.
    #[arg(
        long,
        value_name = "S",
        env = "COUNTERSIGN_CONTENTSTACK_HMAC_SECRET",
        hide_env_values = true
    )]
    hmac_secret: Option<String>,
    /// The envelope's event.
    #[arg(long, default_value = "publish")]
    event: String,
    /// The envelope's module.
    #[arg(long, default_value = "entry")]
    module: String,
    /// The envelope's api_key (the stack).
    #[arg(long, default_value = crate::contentstack::PLACEHOLDER_API_KEY)]
    api_key: String,
    /// The RSA-PSS salt length.
    #[arg(long, value_enum, default_value = "digest")]
    salt_length: crate::contentstack::Salt,
    /// Basic auth configured on the webhook, USER:PASS.
    #[arg(long, value_name = "USER:PASS")]
    basic_auth: Option<String>,
    /// A header to add, 'Name: value' (custom headers of the webhook); may repeat.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    #[command(flatten)]
    body: BodyArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ContentfulArgs {
    /// Where to send it.
    url: String,
    /// The signing secret.
    #[arg(long, env = "COUNTERSIGN_CONTENTFUL_SECRET", hide_env_values = true)]
    secret: String,
    /// The HTTP method.
    #[arg(long, default_value = "POST")]
    method: String,
    /// A header to add and sign, 'Name: value'; may repeat.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// The x-contentful-topic to send and sign.
    #[arg(long)]
    topic: Option<String>,
    #[command(flatten)]
    context: ContextArgs,
    #[command(flatten)]
    body: BodyArgs,
}

pub(crate) fn run(command: Command) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::input(format!("cannot start the runtime: {e}")))?;
    let request = match command {
        Command::Contentstack(args) => contentstack_request(&args)?,
        Command::Contentful(args) => contentful_request(&args)?,
    };
    runtime.block_on(send(request))
}

/// A request ready to send.
struct Outgoing {
    method: Method,
    url: reqwest::Url,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse_url(url: &str) -> Result<reqwest::Url, Failure> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Failure::input(format!("{url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Failure::input(format!("{url:?} is not an http(s) URL")));
    }
    Ok(parsed)
}

fn contentstack_request(args: &ContentstackArgs) -> Result<Outgoing, Failure> {
    let url = parse_url(&args.url)?;
    let body = crate::contentstack::envelope(
        &args.module,
        &args.event,
        &args.api_key,
        &args.body.read()?,
        SystemTime::now(),
    )?;
    let mut headers = vec![(
        "content-type".to_owned(),
        "application/json; charset=utf-8".to_owned(),
    )];
    if let Some(secret) = &args.hmac_secret {
        // An HMAC secret belongs to one stack's webhook: a receiver that binds it refuses the
        // placeholder stack.
        crate::contentstack::warn_placeholder(&args.api_key);
        let secret = HmacSecret::new(secret).map_err(Failure::input)?;
        headers.push((
            HMAC_SIGNATURE_HEADER.to_owned(),
            secret.sign(&body, SystemTime::now()),
        ));
    } else if let Some(path) = &args.private_key {
        let key = SigningKey::from_file(path).map_err(Failure::input)?;
        let salt = SaltLength::from(args.salt_length);
        headers.push((
            RSA_SIGNATURE_HEADER.to_owned(),
            key.sign_webhook(&body, salt).map_err(Failure::input)?,
        ));
    }
    if let Some(pair) = &args.basic_auth {
        use base64::Engine as _;
        headers.push((
            "authorization".to_owned(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ),
        ));
    }
    headers.extend(args.headers.iter().cloned());
    Ok(Outgoing {
        method: Method::POST,
        url,
        headers,
        body,
    })
}

fn contentful_request(args: &ContentfulArgs) -> Result<Outgoing, Failure> {
    let url = parse_url(&args.url)?;
    let secret = SigningSecret::new(args.secret.trim())
        .map_err(|e| Failure::input(format!("invalid secret: {e}")))?;
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| Failure::input(format!("{:?} is not a method", args.method)))?;
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let body = args.body.read()?;
    let mut headers: Vec<(String, String)> = Vec::new();
    if !body.is_empty() {
        headers.push((
            "content-type".to_owned(),
            "application/vnd.contentful.management.v1+json".to_owned(),
        ));
    }
    if let Some(topic) = &args.topic {
        headers.push((contentful::TOPIC.to_owned(), topic.clone()));
    }
    headers.extend(args.headers.iter().cloned());
    let mut request = RequestToSign::new(method.clone(), &target).with_body(&body);
    for (name, value) in &headers {
        request = request.with_header(name, value);
    }
    let context = args.context.to_context();
    let signed = sign(&secret, &request, SystemTime::now(), &context)
        .map_err(|e| Failure::input(format!("{} ({})", e.message(), e.kind())))?;
    headers.extend(signed.iter().map(|(n, v)| (n.to_owned(), v.to_owned())));
    Ok(Outgoing {
        method,
        url,
        headers,
        body,
    })
}

async fn send(outgoing: Outgoing) -> Outcome {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| Failure::input(format!("cannot build the HTTP client: {e}")))?;
    let mut request = client.request(outgoing.method, outgoing.url.clone());
    for (name, value) in &outgoing.headers {
        request = request.header(name.trim(), value.trim());
    }
    let response = request
        .body(outgoing.body)
        .send()
        .await
        .map_err(|e| Failure::input(format!("cannot reach {}: {e}", outgoing.url)))?;
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    print_line(&format!("HTTP {status}"))?;
    for name in [
        "content-type",
        REPLAY_HEADER,
        "retry-after",
        "www-authenticate",
    ] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            print_line(&format!("{name}: {value}"))?;
        }
    }
    print_line("")?;
    print_line(&text)?;
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure::Rejected {
            code: "request_refused",
            message: format!("{} answered {status}", outgoing.url),
        })
    }
}
