//! `countersign contentstack oauth url|exchange|refresh`: Developer Hub's OAuth by hand, to try
//! an app's install flow or to get a token for a script.

use std::time::SystemTime;

use clap::{Args, Subcommand};
use countersign_core::contentstack::Region;
use countersign_core::contentstack::oauth::{
    Answer, Authorization, Client, ClientSecret, CodeVerifier, FORM_CONTENT_TYPE, RefreshToken,
    read_answer,
};
use countersign_core::reason;

use crate::common::{Failure, Outcome, print_line};

/// The most bytes of a token answer read.
const MAX_ANSWER_LEN: usize = 64 * 1024;

/// The environment variable that can hold the client secret instead of `--client-secret`.
const CLIENT_SECRET_ENV: &str = "COUNTERSIGN_CONTENTSTACK_OAUTH_CLIENT_SECRET";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print the URL that authorizes the app: where an admin installs it (the app token), or
    /// with --user where a user authorizes a user token.
    #[command(
        after_help = "Example:\n  countersign contentstack oauth url --app-uid \"$APP_UID\" --client-id \"$CLIENT_ID\" \\\n      \
        --redirect-uri https://my.app/oauth/callback --user --scope cm.entries.management:read \\\n      \
        --state \"$(openssl rand -hex 16)\" --region eu"
    )]
    Url(UrlArgs),
    /// Exchange the code the redirect brought (?code=..&location=..) at the region its location
    /// names; prints the token endpoint's answer (JSON, with the tokens). Exit 1 when refused.
    #[command(
        after_help = "Example:\n  countersign contentstack oauth exchange --client-id \"$CLIENT_ID\" \\\n      \
        --redirect-uri https://my.app/oauth/callback --code \"$CODE\" --location EU\n\n\
        The secret can come from COUNTERSIGN_CONTENTSTACK_OAUTH_CLIENT_SECRET instead of --client-secret;\n\
        a public client gives --code-verifier instead."
    )]
    Exchange(ExchangeArgs),
    /// Refresh with a refresh token; prints the token endpoint's answer (JSON). Exit 1 when
    /// refused (a used or revoked refresh token: oauth_invalid_grant).
    #[command(
        after_help = "Example:\n  countersign contentstack oauth refresh --client-id \"$CLIENT_ID\" \\\n      \
        --redirect-uri https://my.app/oauth/callback --refresh-token \"$REFRESH_TOKEN\" --region eu"
    )]
    Refresh(RefreshArgs),
}

#[derive(Debug, Args)]
pub(crate) struct UrlArgs {
    /// The app's uid (Developer Hub).
    #[arg(long, value_name = "U")]
    app_uid: String,
    /// The app's OAuth client id; with --user it goes into the URL.
    #[arg(long, value_name = "C")]
    client_id: String,
    /// Where the code comes back; with --user it goes into the URL.
    #[arg(long, value_name = "URL")]
    redirect_uri: String,
    /// A scope to ask for (cm.entries.management:read, ...); may repeat. With --user.
    #[arg(long = "scope", value_name = "S", requires = "user")]
    scopes: Vec<String>,
    /// A state the redirect brings back: check it in your callback.
    #[arg(long, value_name = "S")]
    state: Option<String>,
    /// A PKCE code verifier (43 to 128 of A-Z a-z 0-9 - . _ ~): its S256 challenge goes into
    /// the URL, and the exchange gives it back. With --user.
    #[arg(long, value_name = "V", requires = "user")]
    code_verifier: Option<String>,
    /// A user token's authorize URL instead of the install URL of the app token.
    #[arg(long)]
    user: bool,
    /// The region whose app host serves the URL (na, eu, au, azure-na, ..., or a base URL).
    #[arg(long, default_value = "na")]
    region: String,
}

/// The OAuth client, as both the exchange and the refresh need it.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// The app's OAuth client id.
    #[arg(long, value_name = "C")]
    client_id: String,
    /// The client secret (a confidential client); it goes into the form.
    #[arg(long, value_name = "S", env = CLIENT_SECRET_ENV, hide_env_values = true)]
    client_secret: Option<String>,
    /// The redirect URI registered for the client; it goes into the form.
    #[arg(long, value_name = "URL")]
    redirect_uri: String,
    /// The region (na, eu, au, azure-na, azure-eu, gcp-na, gcp-eu), or a base URL that serves
    /// /apps-api/token (a local Developer Hub).
    #[arg(long, default_value = "na")]
    region: String,
}

#[derive(Debug, Args)]
pub(crate) struct ExchangeArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The code from the redirect (it lives 60 seconds).
    #[arg(long, value_name = "CODE")]
    code: String,
    /// The redirect's location (NA, EU, AU, AZURE_NA, AZURE_EU, GCP_NA, GCP_EU): the code is
    /// exchanged at that region, whatever --region says (a base URL serves every location).
    #[arg(long, value_name = "L")]
    location: Option<String>,
    /// The PKCE verifier the authorize URL was made with (a public client, no secret).
    #[arg(long, value_name = "V")]
    code_verifier: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RefreshArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The refresh token; it goes into the form. It can come from
    /// COUNTERSIGN_CONTENTSTACK_OAUTH_REFRESH_TOKEN instead (out of the process list).
    #[arg(
        long,
        value_name = "T",
        env = "COUNTERSIGN_CONTENTSTACK_OAUTH_REFRESH_TOKEN",
        hide_env_values = true
    )]
    refresh_token: String,
}

pub(crate) fn run(command: Command) -> Outcome {
    match command {
        Command::Url(args) => url(&args),
        Command::Exchange(args) => {
            let region = region(&args.client.region)?;
            let region = match &args.location {
                Some(location) => region.for_location(location).map_err(Failure::input)?,
                None => region,
            };
            if args.client.client_secret.is_none() && args.code_verifier.is_none() {
                return Err(Failure::input(format!(
                    "oauth exchange needs --client-secret (or {CLIENT_SECRET_ENV}) for a confidential client such as a backend, or --code-verifier for a public client"
                )));
            }
            let verifier = args
                .code_verifier
                .as_deref()
                .map(CodeVerifier::new)
                .transpose()
                .map_err(Failure::input)?;
            let form = client(&args.client)?
                .exchange_form(&args.code, verifier.as_ref())
                .map_err(Failure::input)?;
            post(&region.token_url(), form)
        }
        Command::Refresh(args) => {
            let region = region(&args.client.region)?;
            let form = client(&args.client)?.refresh_form(&RefreshToken::new(&args.refresh_token));
            post(&region.token_url(), form)
        }
    }
}

fn url(args: &UrlArgs) -> Outcome {
    let region = region(&args.region)?;
    let mut authorization = Authorization::new(&args.app_uid, &args.client_id, &args.redirect_uri)
        .with_scopes(args.scopes.iter().cloned());
    if let Some(state) = &args.state {
        authorization = authorization.with_state(state);
    }
    if let Some(verifier) = &args.code_verifier {
        authorization =
            authorization.with_pkce(&CodeVerifier::new(verifier.as_str()).map_err(Failure::input)?);
    }
    print_line(&if args.user {
        authorization.authorize_url(&region)
    } else {
        authorization.install_url(&region)
    })
}

fn region(text: &str) -> Result<Region, Failure> {
    text.parse().map_err(Failure::input)
}

fn client(args: &ClientArgs) -> Result<Client, Failure> {
    let client = Client::new(&args.client_id, &args.redirect_uri);
    match &args.client_secret {
        Some(secret) => {
            Ok(client.with_secret(ClientSecret::new(secret.trim()).map_err(Failure::input)?))
        }
        None => Ok(client),
    }
}

/// Posts `form` to `url` and prints the answer when it is a token set.
fn post(url: &str, form: String) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::input(format!("cannot start the runtime: {e}")))?;
    let (status, body) = runtime.block_on(async {
        // No redirects: one would carry the form, secret and all, elsewhere.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::input(format!("cannot build the HTTP client: {e}")))?;
        let response = client
            .post(url)
            .header(http::header::CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(form)
            .send()
            .await
            .map_err(|e| Failure::Rejected {
                code: reason::OAUTH_UNAVAILABLE.code,
                message: format!("nothing answered at {url}: {e}"),
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| Failure::Rejected {
            code: reason::OAUTH_UNAVAILABLE.code,
            message: format!("the answer from {url} broke off: {e}"),
        })?;
        if body.len() > MAX_ANSWER_LEN {
            return Err(Failure::Rejected {
                code: reason::OAUTH_REFUSED.code,
                message: format!("the answer from {url} is larger than {MAX_ANSWER_LEN} bytes"),
            });
        }
        Ok::<_, Failure>((status, body))
    })?;
    match read_answer(status, &body, SystemTime::now()) {
        Answer::Issued(_) => print_line(&String::from_utf8_lossy(&body)),
        Answer::InvalidGrant(refusal) => Err(Failure::Rejected {
            code: reason::OAUTH_INVALID_GRANT.code,
            message: refusal.to_string(),
        }),
        Answer::Refused(refusal) => Err(Failure::Rejected {
            code: reason::OAUTH_REFUSED.code,
            message: refusal.to_string(),
        }),
        Answer::Unavailable(status) => Err(Failure::Rejected {
            code: reason::OAUTH_UNAVAILABLE.code,
            message: format!("{url} answered {status}: try again later"),
        }),
    }
}
