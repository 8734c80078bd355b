//! Configuration from environment variables, and dev mode.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use countersign::contentstack::oauth::{Client, ClientSecret};
use countersign::contentstack::session::SessionKey;
use countersign::contentstack::well_known::WellKnownKeys;
use countersign::contentstack::{
    APP_TOKEN_LIFETIME, DEFAULT_TOLERANCE, HmacSecret, Region, SigningKey, StaticKeys,
    mint_app_token,
};
use countersign::credentials::{BasicAuth, RequiredHeaders};
use countersign::ip::IpAllowlist;
use example_support::sealed::SealingKeys;
use example_support::{private_dir, write_private};

/// Where the Contentstack public key comes from.
pub(crate) enum KeySource {
    /// `CONTENTSTACK_PUBLIC_KEY`: a PEM or public-keys.json file; or the dev key pair.
    Static(StaticKeys),
    /// `CONTENTSTACK_KEYS_URL` or `CONTENTSTACK_REGION`: the well-known endpoint, cached.
    WellKnown(WellKnownKeys),
}

pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) data_dir: PathBuf,
    pub(crate) keys: KeySource,
    /// `CONTENTSTACK_HMAC_SECRETS`: `API_KEY=secret` pairs (each verifies only its stack's
    /// webhooks) or bare secrets (any stack), comma-separated.
    pub(crate) hmac_secrets: Vec<(Option<String>, HmacSecret)>,
    /// `REPLAY_STORE_CAPACITY`: entries of the in-memory replay store (without Redis).
    pub(crate) replay_capacity: Option<String>,
    pub(crate) tolerance: Duration,
    pub(crate) basic_auth: Option<BasicAuth>,
    /// `WEBHOOK_REQUIRED_HEADERS`: `Name: value` pairs separated by `;`, all required.
    pub(crate) required_headers: Option<RequiredHeaders>,
    /// `UI_FRAME_ANCESTORS`: who may frame the UI pages (Contentstack's origins by default;
    /// this machine too in dev mode).
    pub(crate) frame_ancestors: String,
    pub(crate) allowed_ips: Option<IpAllowlist>,
    pub(crate) trusted_proxies: Option<IpAllowlist>,
    pub(crate) body_limit: Option<usize>,
    pub(crate) session_key: SessionKey,
    pub(crate) redis_url: Option<String>,
    /// `DATABASE_URL`: PostgreSQL shared by the fleet; SQLite under `DATA_DIR` without it.
    pub(crate) database_url: Option<String>,
    /// `CONTENTSTACK_APP_UID`: this app's uid; the dev app's in dev mode.
    pub(crate) app_uid: Option<String>,
    /// Set in dev mode: the key that signs like Contentstack, to print how to try the app.
    pub(crate) dev_key: Option<(SigningKey, PathBuf)>,
    /// Calling Contentstack as the app, when its OAuth client is configured.
    pub(crate) oauth: Option<OAuthConfig>,
    /// Reconciling the inbox with the stacks' webhook executions, when configured.
    pub(crate) reconcile: Option<ReconcileConfig>,
}

/// A scheduled reconciliation (`RECONCILE_EVERY_SECS`, off by default): every so often, for
/// each installed stack whose webhook uid is known (`RECONCILE_WEBHOOKS`), the webhook's
/// executions of the last `window` are looked up in the inbox and those missing committed,
/// as the app (OAuth), by one instance of the fleet at a time.
pub(crate) struct ReconcileConfig {
    /// `RECONCILE_EVERY_SECS`: how often.
    pub(crate) every: Duration,
    /// `RECONCILE_WINDOW_SECS` (3600 by default): how far back each run looks; the inbox
    /// remembers handled deliveries at least as long.
    pub(crate) window: Duration,
    /// `RECONCILE_WEBHOOKS`: `API_KEY=WEBHOOK_UID` pairs, comma-separated.
    pub(crate) webhooks: Vec<(String, String)>,
}

/// The app's OAuth client (`CONTENTSTACK_OAUTH_CLIENT_ID`, `CONTENTSTACK_OAUTH_CLIENT_SECRET`,
/// `CONTENTSTACK_OAUTH_REDIRECT_URI`), its region and the key its tokens are sealed with.
pub(crate) struct OAuthConfig {
    pub(crate) client: Client,
    /// `CONTENTSTACK_REGION` (`NA` by default): where a code whose redirect names no location
    /// is exchanged. A redirect's `location` wins; a custom base URL serves every location.
    pub(crate) region: Region,
    /// `OAUTH_TOKEN_KEY` (base64 of 32 bytes; keys separated by commas, the one that seals
    /// first, to rotate), or one made and kept under `DATA_DIR`.
    pub(crate) sealing_key: Arc<SealingKeys>,
}

type Error = Box<dyn std::error::Error>;

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn list(name: &str) -> Option<Vec<String>> {
    var(name).map(|v| {
        v.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

impl Config {
    pub(crate) fn from_env() -> Result<Self, Error> {
        let listen = var("LISTEN_ADDR")
            .unwrap_or_else(|| "127.0.0.1:3000".into())
            .parse()?;
        let data_dir = PathBuf::from(var("DATA_DIR").unwrap_or_else(|| "./data".into()));
        private_dir(&data_dir)?;

        let mut dev_key = None;
        let keys = if let Some(path) = var("CONTENTSTACK_PUBLIC_KEY") {
            KeySource::Static(StaticKeys::from_file(path)?)
        } else if let Some(url) = var("CONTENTSTACK_KEYS_URL") {
            KeySource::WellKnown(well_known(WellKnownKeys::from_url(url)?)?)
        } else if let Some(region) = var("CONTENTSTACK_REGION") {
            KeySource::WellKnown(well_known(WellKnownKeys::for_region(
                &region.parse::<Region>()?,
            ))?)
        } else {
            // Dev mode changes where the key comes from, nothing else: every request is still
            // verified, against a dev key pair only this machine holds.
            let dir = data_dir.join("dev-keys");
            let key = dev_key_pair(&dir)?;
            let keys = StaticKeys::parse(&key.public_key().to_pkcs1_pem())?;
            dev_key = Some((key, dir));
            KeySource::Static(keys)
        };

        let hmac_secrets = example_support::tenant_secrets(var("CONTENTSTACK_HMAC_SECRETS"))
            .map_err(|e| format!("CONTENTSTACK_HMAC_SECRETS: {e}"))?
            .into_iter()
            .map(|(stack, secret)| HmacSecret::new(secret).map(|secret| (stack, secret)))
            .collect::<Result<Vec<_>, _>>()?;
        let tolerance = var("WEBHOOK_TOLERANCE_SECS")
            .map(|v| v.parse().map(Duration::from_secs))
            .transpose()?
            .unwrap_or(DEFAULT_TOLERANCE);
        let basic_auth = list("WEBHOOK_BASIC_AUTH").map(BasicAuth::new).transpose()?;
        let required_headers = var("WEBHOOK_REQUIRED_HEADERS")
            .map(|pairs| required_headers(&pairs))
            .transpose()?;
        let allowed_ips = list("WEBHOOK_ALLOWED_IPS")
            .map(IpAllowlist::new)
            .transpose()?;
        let trusted_proxies = list("TRUSTED_PROXIES").map(IpAllowlist::new).transpose()?;
        let body_limit = var("WEBHOOK_BODY_LIMIT").map(|v| v.parse()).transpose()?;
        let oauth = oauth_config(&data_dir)?;
        let reconcile = reconcile_config(oauth.is_some())?;
        let session_key = match var("SESSION_SECRET") {
            Some(secret) => SessionKey::new(secret)?,
            None => stored_session_key(&data_dir)?,
        };
        Ok(Self {
            listen,
            data_dir,
            keys,
            hmac_secrets,
            replay_capacity: var("REPLAY_STORE_CAPACITY"),
            tolerance,
            basic_auth,
            required_headers,
            frame_ancestors: var("UI_FRAME_ANCESTORS").unwrap_or_else(|| {
                let mut origins = CONTENTSTACK_ORIGINS.to_owned();
                if dev_key.is_some() {
                    origins.push_str(" http://localhost:* http://127.0.0.1:*");
                }
                origins
            }),
            allowed_ips,
            trusted_proxies,
            body_limit,
            session_key,
            redis_url: var("REDIS_URL"),
            database_url: var("DATABASE_URL"),
            app_uid: var("CONTENTSTACK_APP_UID")
                .or_else(|| dev_key.is_some().then(|| DEV_APP_UID.to_owned())),
            dev_key,
            oauth,
            reconcile,
        })
    }

    /// The configuration of the app's own tests: the test kit's key source and HMAC secret,
    /// its app uid, and data under `data_dir`.
    #[cfg(test)]
    pub(crate) fn for_tests(data_dir: PathBuf, kit: &countersign::testing::TestKit) -> Self {
        Self {
            listen: ([127, 0, 0, 1], 0).into(),
            data_dir,
            keys: KeySource::Static(kit.contentstack_keys()),
            hmac_secrets: vec![(None, kit.contentstack_hmac_secret())],
            replay_capacity: None,
            tolerance: DEFAULT_TOLERANCE,
            basic_auth: None,
            required_headers: None,
            frame_ancestors: CONTENTSTACK_ORIGINS.to_owned(),
            allowed_ips: None,
            trusted_proxies: None,
            body_limit: None,
            session_key: SessionKey::new([9; 32]).expect("a 32-byte key"),
            redis_url: None,
            database_url: None,
            app_uid: Some(countersign::testing::TestKit::APP_UID.to_owned()),
            dev_key: None,
            oauth: None,
            reconcile: None,
        }
    }

    /// What to print in dev mode: how to try the app.
    pub(crate) fn dev_instructions(&self) -> Option<String> {
        let (key, dir) = self.dev_key.as_ref()?;
        let base = format!("http://{}", self.listen);
        let app_uid = self.app_uid.as_deref().unwrap_or(DEV_APP_UID);
        let claims = serde_json::json!({
            "app_uid": app_uid, "installation_uid": "dev-installation", "organization_uid": "dev-org",
            "user_uid": "dev-user", "stack_api_key": "blt_dev_stack",
        });
        let install = serde_json::json!({"app_installation": {
            "app_uid": app_uid, "installation_uid": "dev-installation", "organization_uid": "dev-org",
            "target": {"type": "stack", "uid": "blt_dev_stack"},
        }});
        let token = mint_app_token(key, &claims, SystemTime::now(), APP_TOKEN_LIFETIME).ok()?;
        let private = dir.join("private.pem");
        Some(format!(
            "dev mode: no Contentstack key is configured, so requests are verified against the dev key pair in {dir}\n\n\
             Install the app on the dev stack (webhooks of stacks without an installation are refused):\n  countersign send contentstack {base}/webhooks/contentstack --private-key {private} --api-key blt_dev_stack \
             --module app_installation --event install --body '{install}'\n\n\
             Send a signed webhook (accepted; the UI below shows it):\n  countersign send contentstack {base}/webhooks/contentstack --private-key {private} --api-key blt_dev_stack\n\n\
             Send a forged one (refused with 401):\n  countersign keygen --out /tmp/forger && \
             countersign send contentstack {base}/webhooks/contentstack --private-key /tmp/forger/private.pem\n\n\
             Open a UI location (the app-token is valid for 5 minutes):\n  {base}/ui/sidebar?app-token={token}\n",
            dir = dir.display(),
            private = private.display(),
        ))
    }
}

/// The well-known key source's settings: `CONTENTSTACK_KEYS_CA` (a PEM file of a certificate
/// authority to trust besides the system's), `CONTENTSTACK_KEYS_TIMEOUT_SECS` (one fetch, 10 by
/// default) and `CONTENTSTACK_KEYS_REFETCH_SECS` (how soon after a fetch a signature that does
/// not verify may fetch again, for a rotation: 60 by default).
fn well_known(mut keys: WellKnownKeys) -> Result<WellKnownKeys, Error> {
    if let Some(path) = var("CONTENTSTACK_KEYS_CA") {
        let pem = std::fs::read_to_string(&path)
            .map_err(|e| format!("CONTENTSTACK_KEYS_CA: cannot read {path}: {e}"))?;
        keys = keys.with_root_certificate(&pem)?;
    }
    if let Some(secs) = var("CONTENTSTACK_KEYS_TIMEOUT_SECS") {
        keys = keys.with_timeout(Duration::from_secs(secs.parse()?));
    }
    if let Some(secs) = var("CONTENTSTACK_KEYS_REFETCH_SECS") {
        keys = keys.with_min_refetch_interval(Duration::from_secs(secs.parse()?));
    }
    Ok(keys)
}

/// The OAuth client, if `CONTENTSTACK_OAUTH_CLIENT_ID` is set: its secret and redirect URI are
/// then required. A fleet (`DATABASE_URL`) must set `OAUTH_TOKEN_KEY`: each instance opens the
/// tokens the others sealed.
fn oauth_config(data_dir: &Path) -> Result<Option<OAuthConfig>, Error> {
    let id = var("CONTENTSTACK_OAUTH_CLIENT_ID");
    let secret = var("CONTENTSTACK_OAUTH_CLIENT_SECRET");
    let redirect_uri = var("CONTENTSTACK_OAUTH_REDIRECT_URI");
    let (id, secret, redirect_uri) = match (id, secret, redirect_uri) {
        (None, None, None) => return Ok(None),
        (Some(id), Some(secret), Some(redirect_uri)) => (id, secret, redirect_uri),
        _ => {
            return Err("set all of CONTENTSTACK_OAUTH_CLIENT_ID, CONTENTSTACK_OAUTH_CLIENT_SECRET and CONTENTSTACK_OAUTH_REDIRECT_URI, or none".into());
        }
    };
    let configured_key = var("OAUTH_TOKEN_KEY");
    if configured_key.is_none() && var("DATABASE_URL").is_some() {
        return Err("with DATABASE_URL, set OAUTH_TOKEN_KEY (base64 of 32 bytes, the same for every instance): each instance must open the tokens the others sealed".into());
    }
    let region = match var("CONTENTSTACK_REGION") {
        Some(region) => region.parse()?,
        None => Region::Na,
    };
    Ok(Some(OAuthConfig {
        client: Client::new(id, redirect_uri).with_secret(ClientSecret::new(secret)?),
        region,
        sealing_key: Arc::new(SealingKeys::configured_or_kept(
            configured_key.as_deref(),
            data_dir,
        )?),
    }))
}

/// The origins Contentstack serves its app (and so its UI locations' host pages) from.
const CONTENTSTACK_ORIGINS: &str = "https://app.contentstack.com https://*.contentstack.com";

/// `Name: value; Other: value`: every header required, each with its one value.
fn required_headers(pairs: &str) -> Result<RequiredHeaders, Error> {
    let mut required = RequiredHeaders::new();
    for pair in pairs.split(';').filter(|p| !p.trim().is_empty()) {
        let (name, value) = pair.split_once(':').ok_or_else(|| {
            format!(
                "WEBHOOK_REQUIRED_HEADERS holds `Name: value` pairs separated by `;`, not {pair:?}"
            )
        })?;
        required = required.with_header(name, [value])?;
    }
    Ok(required)
}

/// The app uid of dev mode: the dev app-tokens and installation events name it.
pub(crate) const DEV_APP_UID: &str = "dev-app";

/// The dev key pair under `dir`, made on the first start and reused after.
fn dev_key_pair(dir: &Path) -> Result<SigningKey, Error> {
    let private = dir.join("private.pem");
    if private.exists() {
        return Ok(SigningKey::from_file(&private)?);
    }
    private_dir(dir)?;
    let key = SigningKey::generate()?;
    write_private(&private, &key.to_pkcs1_pem())?;
    std::fs::write(dir.join("public.pem"), key.public_key().to_pkcs1_pem())?;
    std::fs::write(
        dir.join("public-keys.json"),
        key.public_key().to_public_keys_json(),
    )?;
    Ok(key)
}

/// The session key stored under `data_dir`, made on the first start.
fn stored_session_key(data_dir: &Path) -> Result<SessionKey, Error> {
    let text = example_support::kept_secret(&data_dir.join("session-secret"), || {
        countersign::random_hex(32).map_err(|e| e.to_string())
    })?;
    Ok(SessionKey::new(text)?)
}

/// [`ReconcileConfig`] from `RECONCILE_EVERY_SECS`, `RECONCILE_WINDOW_SECS` and
/// `RECONCILE_WEBHOOKS`; `None` unless `RECONCILE_EVERY_SECS` is set.
fn reconcile_config(oauth: bool) -> Result<Option<ReconcileConfig>, Error> {
    let Some(every) = var("RECONCILE_EVERY_SECS") else {
        return Ok(None);
    };
    if !oauth {
        return Err(
            "RECONCILE_EVERY_SECS needs the OAuth client: the executions are read as the app"
                .into(),
        );
    }
    let every = Duration::from_secs(every.parse::<u64>()?.max(1));
    let window = var("RECONCILE_WINDOW_SECS")
        .map(|v| v.parse().map(Duration::from_secs))
        .transpose()?
        .unwrap_or(countersign_inbox::DEFAULT_RETRY_HORIZON);
    let webhooks = list("RECONCILE_WEBHOOKS")
        .unwrap_or_default()
        .into_iter()
        .map(|pair| {
            let (stack, webhook) = pair
                .split_once('=')
                .filter(|(stack, webhook)| !stack.trim().is_empty() && !webhook.trim().is_empty())
                .ok_or_else(|| {
                    format!("RECONCILE_WEBHOOKS: {pair:?} is not API_KEY=WEBHOOK_UID")
                })?;
            Ok((stack.trim().to_owned(), webhook.trim().to_owned()))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Some(ReconcileConfig {
        every,
        window,
        webhooks,
    }))
}
