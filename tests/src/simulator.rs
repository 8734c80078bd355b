//! A delivery simulator: it plays Contentstack and Contentful against a fleet of the example
//! backends, as their delivery services do, and reads back what the fleet recorded.
//!
//! - **Contentstack** (`marketplace-app`): webhooks signed with RSA-PSS or HMAC. A delivery
//!   that gets no 2xx answer within the timeout (30 s) is retried 5, 25, 125 and 625 s later,
//!   then given up (the documented retry policy); the [`Schedule`] scales those times so that a
//!   test runs in seconds. [`Resend::ReSign`] (mode A) signs each attempt afresh (a new RSA-PSS
//!   signature, a new HMAC `t`); [`Resend::SameBytes`] (mode B) sends the first attempt's bytes
//!   and headers again. Whether Contentstack re-signs a retry is not documented: both happen.
//! - **Contentful** (`contentful-app`): webhooks with an `x-contentful-idempotency-key` shared by
//!   every attempt, each attempt signed afresh (its timestamp is in the signature). Contentful's
//!   own retry schedule is not in our spec; the simulator gives it the same schedule.
//! - An answer may be lost on the way ([`Simulator::losing_answers`]): the provider sees no
//!   answer although the fleet handled the attempt, and retries it, as it would when a
//!   connection breaks after the request was read.
//! - Each attempt goes to the next instance in turn, as a round-robin load balancer would; an
//!   instance that is down or paused costs that attempt, and the retry goes to the next.
//! - [`Simulator::read_back`] asks the fleet, through the examples' own APIs (a session from a
//!   signed UI location's app-token for `/api/events`; a frontend-signed request for
//!   `/api/deliveries`), what each stack and space environment recorded, and counts every
//!   delivery by the unique marker its body carries. The count is the fleet's, not the
//!   simulator's idea of a delivery id: two records of one delivery show as two.
//!
//! [`Report`] puts the outcomes and the records together: deliveries, attempts, recorded once,
//! lost (acknowledged, or not given up, yet not recorded), duplicated (recorded more than once)
//! and the exhausted ones with the answers they got.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use countersign_core::contentful::{Context, RequestToSign, SigningSecret};
use countersign_core::contentstack::{
    APP_TOKEN_LIFETIME, ATTEMPT_TIMEOUT, HmacSecret, INSTALLATION_MODULE, RETRY_SCHEDULE,
    SaltLength, SigningKey, WebhookBody, mint_app_token,
};
use serde_json::{Value, json};

/// Where the marketplace example takes Contentstack's webhooks.
pub const CONTENTSTACK_PATH: &str = "/webhooks/contentstack";
/// Where the Contentful example takes webhooks.
pub const CONTENTFUL_PATH: &str = "/contentful/webhooks";
/// The environment every simulated space has.
pub const ENVIRONMENT: &str = "master";

/// When attempts are made and how long each waits for its answer.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The pause before each retry (so one attempt more than there are pauses).
    pub retries: Vec<Duration>,
    /// How long an attempt waits for its answer.
    pub timeout: Duration,
}

impl Schedule {
    /// Contentstack's schedule with every time multiplied by `scale` (`1.0`: real time); the
    /// timeout is at least `min_timeout`, since a loaded test machine answers slower than
    /// `30 s x scale`.
    #[must_use]
    pub fn contentstack(scale: f64, min_timeout: Duration) -> Self {
        Self {
            retries: RETRY_SCHEDULE.iter().map(|d| d.mul_f64(scale)).collect(),
            timeout: ATTEMPT_TIMEOUT.mul_f64(scale).max(min_timeout),
        }
    }

    /// From the first attempt to the start of the last one.
    #[must_use]
    pub fn span(&self) -> Duration {
        self.retries.iter().sum()
    }
}

/// How a Contentstack retry is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Mode A: each attempt signed afresh (same body).
    ReSign,
    /// Mode B: each attempt the first attempt's bytes and headers.
    SameBytes,
}

/// Who sends a delivery, and how it is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// A Contentstack webhook signed with RSA-PSS (`X-Contentstack-Request-Signature`).
    ContentstackRsa,
    /// A Contentstack webhook signed with HMAC (`X-Contentstack-HMAC-Signature`).
    ContentstackHmac,
    /// A Contentful webhook with an idempotency key.
    Contentful,
}

impl Provider {
    fn is_contentstack(self) -> bool {
        !matches!(self, Self::Contentful)
    }
}

/// What the simulator signs with: what the fleet is configured to trust.
pub struct Credentials {
    /// Contentstack's signing key (the fleet has its public half).
    pub contentstack_key: SigningKey,
    /// The Contentstack HMAC secret.
    pub contentstack_hmac: HmacSecret,
    /// The Contentful signing secret.
    pub contentful: SigningSecret,
    /// The Contentstack app the fleet serves (installation events and app-tokens name it).
    pub app_uid: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("app_uid", &self.app_uid)
            .finish_non_exhaustive()
    }
}

/// The instances the simulator sends to: base URLs (`http://127.0.0.1:3000`).
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// Instances of `marketplace-app`.
    pub contentstack: Vec<String>,
    /// Instances of `contentful-app`.
    pub contentful: Vec<String>,
}

/// One delivery to make: who sends it, to which stack (Contentstack) or space (Contentful),
/// and the marker its body carries.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Who sends it.
    pub provider: Provider,
    /// The stack's api key or the space id.
    pub tenant: String,
    /// Unique to this delivery; read back from the records.
    pub marker: String,
    /// How a Contentstack retry is sent (Contentful re-signs every attempt).
    pub resend: Resend,
}

/// What one attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP status.
    Status(u16),
    /// No answer within the timeout.
    Timeout,
    /// No connection (the instance is down).
    Refused,
    /// A 2xx that was lost on the way ([`Simulator::losing_answers`]).
    Lost,
}

impl Answer {
    fn acknowledged(&self) -> bool {
        matches!(self, Self::Status(status) if (200..300).contains(status))
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status) => write!(f, "{status}"),
            Self::Timeout => f.write_str("timeout"),
            Self::Refused => f.write_str("refused"),
            Self::Lost => f.write_str("2xx-lost"),
        }
    }
}

/// A delivery and the answers its attempts got.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The delivery.
    pub planned: Planned,
    /// One answer per attempt, in order.
    pub answers: Vec<Answer>,
}

impl Outcome {
    /// Whether an attempt was answered 2xx (the provider stops retrying).
    #[must_use]
    pub fn acknowledged(&self) -> bool {
        self.answers.iter().any(Answer::acknowledged)
    }
}

/// Plays the providers against a fleet.
pub struct Simulator {
    fleet: Fleet,
    credentials: Credentials,
    schedule: Schedule,
    client: reqwest::Client,
    turn: [AtomicUsize; 2],
    failures: Mutex<Failures>,
    /// Lose one acknowledgement in this many (0: none).
    lose_one_in: usize,
    acknowledgements: AtomicUsize,
    lost_answers: AtomicUsize,
}

/// Failed attempts in a row, as the provider counts them for a webhook (Contentstack disables
/// one after 10).
#[derive(Debug, Default, Clone, Copy)]
struct Failures {
    current: usize,
    longest: usize,
}

impl Simulator {
    /// A simulator of `fleet` signing with `credentials`.
    ///
    /// # Panics
    /// When the HTTP client cannot be built.
    #[must_use]
    pub fn new(fleet: Fleet, credentials: Credentials, schedule: Schedule) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(schedule.timeout)
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        Self {
            fleet,
            credentials,
            schedule,
            client,
            turn: [AtomicUsize::new(0), AtomicUsize::new(0)],
            failures: Mutex::default(),
            lose_one_in: 0,
            acknowledgements: AtomicUsize::new(0),
            lost_answers: AtomicUsize::new(0),
        }
    }

    /// Loses one 2xx answer in `n` on the way (`0`: none): the attempt was handled, the
    /// provider does not know it and retries.
    #[must_use]
    pub fn losing_answers(mut self, n: usize) -> Self {
        self.lose_one_in = n;
        self
    }

    /// How many 2xx answers were lost on the way.
    #[must_use]
    pub fn lost_answers(&self) -> usize {
        self.lost_answers.load(Ordering::Relaxed)
    }

    /// The longest run of failed attempts in a row (across deliveries, in the order their
    /// answers came).
    ///
    /// # Panics
    /// When a thread panicked while holding the counter.
    #[must_use]
    pub fn longest_failure_run(&self) -> usize {
        self.failures.lock().expect("the failure counter").longest
    }

    /// The next instance for `provider`, in turn.
    fn next(&self, provider: Provider) -> String {
        let (instances, turn, path) = if provider.is_contentstack() {
            (&self.fleet.contentstack, &self.turn[0], CONTENTSTACK_PATH)
        } else {
            (&self.fleet.contentful, &self.turn[1], CONTENTFUL_PATH)
        };
        let n = turn.fetch_add(1, Ordering::Relaxed) % instances.len();
        format!("{}{path}", instances[n])
    }

    /// The app's installation on `stack`, as Contentstack sends it; it goes through the
    /// schedule like any delivery.
    pub async fn install(&self, stack: &str) -> Outcome {
        let data = json!({"app_installation": {
            "app_uid": self.credentials.app_uid, "installation_uid": format!("inst-{stack}"),
            "target": {"type": "stack", "uid": stack},
        }});
        let body = WebhookBody::new(INSTALLATION_MODULE, "install")
            .with_api_key(stack)
            .with_data(&data)
            .to_json(SystemTime::now());
        let planned = Planned {
            provider: Provider::ContentstackRsa,
            tenant: stack.to_owned(),
            marker: format!("install-{stack}"),
            resend: Resend::ReSign,
        };
        self.send(planned, body).await
    }

    /// Makes one delivery: the first attempt now, the retries on the schedule until one is
    /// answered 2xx or the schedule is spent.
    pub async fn deliver(&self, planned: Planned) -> Outcome {
        let body = match planned.provider {
            Provider::ContentstackRsa | Provider::ContentstackHmac => {
                WebhookBody::new("entry", "publish")
                    .with_api_key(&planned.tenant)
                    .with_data(&json!({"entry": {"uid": planned.marker, "title": "simulated"}}))
                    .to_json(SystemTime::now())
            }
            Provider::Contentful => {
                json!({"sys": {"id": planned.marker, "type": "Entry"}, "fields": {}}).to_string()
            }
        };
        self.send(planned, body).await
    }

    async fn send(&self, planned: Planned, body: String) -> Outcome {
        let idempotency_key = countersign_core::random_hex(16).expect("the random source");
        let mut first: Option<Vec<(String, String)>> = None;
        let mut answers = Vec::new();
        for attempt in 0..=self.schedule.retries.len() {
            if attempt > 0 {
                tokio::time::sleep(self.schedule.retries[attempt - 1]).await;
            }
            let headers = match (&first, planned.resend, planned.provider) {
                (Some(headers), Resend::SameBytes, provider) if provider.is_contentstack() => {
                    headers.clone()
                }
                _ => self.sign(&planned, &body, &idempotency_key),
            };
            first.get_or_insert_with(|| headers.clone());
            let mut answer = self
                .attempt(self.next(planned.provider), &headers, &body)
                .await;
            if answer.acknowledged() && self.loses_this_one() {
                answer = Answer::Lost;
            }
            self.count(&answer);
            let done = answer.acknowledged();
            answers.push(answer);
            if done {
                break;
            }
        }
        Outcome { planned, answers }
    }

    /// The headers of one attempt, signed now.
    fn sign(&self, planned: &Planned, body: &str, idempotency_key: &str) -> Vec<(String, String)> {
        let json = ("content-type".to_owned(), "application/json".to_owned());
        match planned.provider {
            Provider::ContentstackRsa => vec![
                json,
                (
                    "x-contentstack-request-signature".to_owned(),
                    self.credentials
                        .contentstack_key
                        .sign_webhook(body.as_bytes(), SaltLength::Digest)
                        .expect("the key signs"),
                ),
            ],
            Provider::ContentstackHmac => vec![
                json,
                (
                    "x-contentstack-hmac-signature".to_owned(),
                    self.credentials
                        .contentstack_hmac
                        .sign(body.as_bytes(), SystemTime::now()),
                ),
            ],
            Provider::Contentful => {
                let own = [
                    (
                        "content-type",
                        "application/vnd.contentful.management.v1+json",
                    ),
                    ("x-contentful-topic", "ContentManagement.Entry.publish"),
                    ("x-contentful-idempotency-key", idempotency_key),
                ];
                let context = Context {
                    space_id: Some(planned.tenant.clone()),
                    environment_id: Some(ENVIRONMENT.to_owned()),
                    ..Context::default()
                };
                self.contentful_headers(http::Method::POST, CONTENTFUL_PATH, &own, body, &context)
            }
        }
    }

    fn contentful_headers(
        &self,
        method: http::Method,
        target: &str,
        own: &[(&str, &str)],
        body: &str,
        context: &Context,
    ) -> Vec<(String, String)> {
        let mut request = RequestToSign::new(method, target).with_body(body.as_bytes());
        for (name, value) in own {
            request = request.with_header(name, value);
        }
        let signed = countersign_core::contentful::sign(
            &self.credentials.contentful,
            &request,
            SystemTime::now(),
            context,
        )
        .expect("the simulator's header values move no boundary");
        own.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .chain(
                signed
                    .iter()
                    .map(|(name, value)| (name.to_owned(), value.to_owned())),
            )
            .collect()
    }

    async fn attempt(&self, url: String, headers: &[(String, String)], body: &str) -> Answer {
        let mut request = self.client.post(url).body(body.to_owned());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => Answer::Status(response.status().as_u16()),
            Err(error) if error.is_timeout() => Answer::Timeout,
            Err(_) => Answer::Refused,
        }
    }

    /// Whether this 2xx answer is lost on the way (one in `lose_one_in`, in turn).
    fn loses_this_one(&self) -> bool {
        let n = self.acknowledgements.fetch_add(1, Ordering::Relaxed);
        let lost = self.lose_one_in > 0 && n % self.lose_one_in == self.lose_one_in - 1;
        if lost {
            self.lost_answers.fetch_add(1, Ordering::Relaxed);
        }
        lost
    }

    fn count(&self, answer: &Answer) {
        let mut failures = self.failures.lock().expect("the failure counter");
        if answer.acknowledged() {
            failures.current = 0;
        } else {
            failures.current += 1;
            failures.longest = failures.longest.max(failures.current);
        }
    }

    /// What the fleet recorded for each of `tenants` (stacks and spaces), by marker: how many
    /// records carry it. Read through the first instance of each example that answers.
    ///
    /// # Errors
    /// When no instance answers the read, or answers something unexpected.
    pub async fn read_back(
        &self,
        tenants: &[(Provider, String)],
    ) -> Result<HashMap<String, usize>, String> {
        let mut counts = HashMap::new();
        for (provider, tenant) in tenants {
            let instances = if provider.is_contentstack() {
                &self.fleet.contentstack
            } else {
                &self.fleet.contentful
            };
            let mut markers = Err(format!("no instance to read {tenant} from"));
            for base in instances {
                let read = if provider.is_contentstack() {
                    self.read_stack_at(base, tenant).await
                } else {
                    self.read_space_at(base, tenant).await
                };
                markers = read.map_err(|error| format!("{base}: {error}"));
                if markers.is_ok() {
                    break;
                }
            }
            for marker in markers? {
                *counts.entry(marker).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// The markers of every event `stack` recorded, read at `base` through a session of the
    /// marketplace app (an app-token opens a UI location; the page carries the session).
    async fn read_stack_at(&self, base: &str, stack: &str) -> Result<Vec<String>, String> {
        let claims = json!({
            "app_uid": self.credentials.app_uid, "installation_uid": format!("inst-{stack}"),
            "organization_uid": "org-simulated", "user_uid": "user-simulated",
            "stack_api_key": stack, "jti": countersign_core::random_hex(8).expect("random"),
        });
        let token = mint_app_token(
            &self.credentials.contentstack_key,
            &claims,
            SystemTime::now(),
            APP_TOKEN_LIFETIME,
        )
        .map_err(|e| e.to_string())?;
        let page = self
            .read(
                self.client
                    .get(format!("{base}/ui/sidebar?app-token={token}")),
            )
            .await?;
        let marker = r#"<meta name="app-session" content=""#;
        let session = page
            .split(marker)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .ok_or("the page carries no session")?
            .to_owned();
        let mut markers = Vec::new();
        let mut before: Option<i64> = None;
        loop {
            let mut url = format!("{base}/api/events?limit=500");
            if let Some(before) = before {
                url.push_str(&format!("&before={before}"));
            }
            let page: Value = serde_json::from_str(
                &self
                    .read(self.client.get(url).bearer_auth(&session))
                    .await?,
            )
            .map_err(|e| e.to_string())?;
            let events = page["events"].as_array().ok_or("no events")?;
            markers.extend(
                events
                    .iter()
                    .filter_map(|e| e["data"]["entry"]["uid"].as_str().map(str::to_owned)),
            );
            match page["next_before"].as_i64() {
                Some(next) => before = Some(next),
                None => return Ok(markers),
            }
        }
    }

    /// The markers of every delivery `space` recorded, read at `base` through frontend-signed
    /// requests to the Contentful app's `/api/deliveries`.
    async fn read_space_at(&self, base: &str, space: &str) -> Result<Vec<String>, String> {
        let context = Context {
            space_id: Some(space.to_owned()),
            environment_id: Some(ENVIRONMENT.to_owned()),
            user_id: Some("user-simulated".to_owned()),
            ..Context::default()
        };
        let mut markers = Vec::new();
        let mut after = 0_i64;
        loop {
            let target = format!("/api/deliveries?after={after}&limit=500");
            let mut request = self.client.get(format!("{base}{target}"));
            for (name, value) in
                self.contentful_headers(http::Method::GET, &target, &[], "", &context)
            {
                request = request.header(name, value);
            }
            let page: Value =
                serde_json::from_str(&self.read(request).await?).map_err(|e| e.to_string())?;
            let deliveries = page["deliveries"].as_array().ok_or("no deliveries")?;
            for delivery in deliveries {
                let body: Value = serde_json::from_str(delivery["body"].as_str().unwrap_or("null"))
                    .unwrap_or(Value::Null);
                if let Some(marker) = body["sys"]["id"].as_str() {
                    markers.push(marker.to_owned());
                }
            }
            match page["next_after"].as_i64() {
                Some(next) => after = next,
                None => return Ok(markers),
            }
        }
    }

    async fn read(&self, request: reqwest::RequestBuilder) -> Result<String, String> {
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("{status}: {text}"))
        }
    }
}

/// What to send: how many deliveries, over how long, to which stacks and spaces.
#[derive(Debug, Clone)]
pub struct Load {
    /// Deliveries in all.
    pub deliveries: usize,
    /// The first attempts are spread evenly over this long.
    pub window: Duration,
    /// The stacks (Contentstack deliveries); the app is installed on each first.
    pub stacks: Vec<String>,
    /// The spaces (Contentful deliveries); none: Contentstack only.
    pub spaces: Vec<String>,
    /// Tells this run's markers from another's.
    pub run: String,
}

impl Load {
    /// The deliveries, in a fixed mix: of every ten, four Contentstack RSA, three Contentstack
    /// HMAC and three Contentful (Contentstack only when there are no spaces); Contentstack
    /// deliveries alternate between re-signed retries (mode A) and resent bytes (mode B);
    /// stacks and spaces in turn.
    #[must_use]
    pub fn plan(&self) -> Vec<Planned> {
        (0..self.deliveries)
            .map(|n| {
                let provider = match (n % 10, self.spaces.is_empty()) {
                    (0..=3, _) | (7..=9, true) => Provider::ContentstackRsa,
                    (4..=6, _) => Provider::ContentstackHmac,
                    _ => Provider::Contentful,
                };
                let tenant = if provider.is_contentstack() {
                    self.stacks[n % self.stacks.len()].clone()
                } else {
                    self.spaces[n % self.spaces.len()].clone()
                };
                Planned {
                    provider,
                    tenant,
                    marker: format!("{}-{n}", self.run),
                    resend: if n % 2 == 0 {
                        Resend::ReSign
                    } else {
                        Resend::SameBytes
                    },
                }
            })
            .collect()
    }

    /// The stacks and spaces to read back.
    #[must_use]
    pub fn tenants(&self) -> Vec<(Provider, String)> {
        self.stacks
            .iter()
            .map(|s| (Provider::ContentstackRsa, s.clone()))
            .chain(
                self.spaces
                    .iter()
                    .map(|s| (Provider::Contentful, s.clone())),
            )
            .collect()
    }
}

/// Installs the app on every stack of `load`, makes its deliveries (each through its retries)
/// and returns their outcomes once the last one is settled.
///
/// # Errors
/// When an installation is not acknowledged: nothing else can be recorded then.
///
/// # Panics
/// When a delivery's task panics.
pub async fn run(
    simulator: &std::sync::Arc<Simulator>,
    load: &Load,
) -> Result<Vec<Outcome>, String> {
    for stack in &load.stacks {
        let installed = simulator.install(stack).await;
        if !installed.acknowledged() {
            return Err(format!(
                "the installation on {stack} was not acknowledged: {:?}",
                installed.answers
            ));
        }
    }
    let planned = load.plan();
    let gap = load.window.div_f64(planned.len().max(1) as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(planned.len());
    for (n, delivery) in planned.into_iter().enumerate() {
        tokio::time::sleep_until(start + gap * u32::try_from(n).unwrap_or(u32::MAX)).await;
        let simulator = std::sync::Arc::clone(simulator);
        tasks.push(tokio::spawn(
            async move { simulator.deliver(delivery).await },
        ));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.expect("a delivery task"));
    }
    Ok(outcomes)
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("fleet", &self.fleet)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

/// The outcomes and the records, put together.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Deliveries made.
    pub deliveries: usize,
    /// Attempts made, retries included.
    pub attempts: usize,
    /// Deliveries answered 2xx at some attempt.
    pub acknowledged: usize,
    /// Deliveries recorded exactly once.
    pub recorded_once: usize,
    /// Deliveries acknowledged but never recorded: a loss.
    pub lost: Vec<Outcome>,
    /// Deliveries recorded more than once, with the count.
    pub duplicated: Vec<(Outcome, usize)>,
    /// Deliveries whose every attempt failed (the provider gave up), with whether the fleet
    /// recorded them anyway (an answer lost after the commit).
    pub exhausted: Vec<(Outcome, usize)>,
    /// The longest run of failed attempts in a row.
    pub longest_failure_run: usize,
}

impl Report {
    /// Matches `outcomes` against `recorded` (records per marker).
    #[must_use]
    pub fn new(
        outcomes: &[Outcome],
        recorded: &HashMap<String, usize>,
        longest_failure_run: usize,
    ) -> Self {
        let mut report = Self {
            deliveries: outcomes.len(),
            longest_failure_run,
            ..Self::default()
        };
        for outcome in outcomes {
            report.attempts += outcome.answers.len();
            let records = recorded.get(&outcome.planned.marker).copied().unwrap_or(0);
            if outcome.acknowledged() {
                report.acknowledged += 1;
            } else {
                report.exhausted.push((outcome.clone(), records));
            }
            match records {
                1 => report.recorded_once += 1,
                0 if outcome.acknowledged() => report.lost.push(outcome.clone()),
                0 => {}
                n => report.duplicated.push((outcome.clone(), n)),
            }
        }
        report
    }

    /// No delivery lost, none recorded twice.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "deliveries {}, attempts {}, acknowledged {}, recorded once {}, lost {}, duplicated {}, \
             exhausted {}; longest run of failed attempts in a row {}",
            self.deliveries,
            self.attempts,
            self.acknowledged,
            self.recorded_once,
            self.lost.len(),
            self.duplicated.len(),
            self.exhausted.len(),
            self.longest_failure_run,
        )?;
        let lines = self
            .lost
            .iter()
            .map(|o| ("LOST".to_owned(), o, String::new()))
            .chain(
                self.duplicated
                    .iter()
                    .map(|(o, n)| (format!("DUPLICATED x{n}"), o, String::new())),
            )
            .chain(
                self.exhausted
                    .iter()
                    .map(|(o, n)| ("exhausted".to_owned(), o, format!(" (recorded {n})"))),
            );
        for (what, outcome, recorded) in lines {
            let p = &outcome.planned;
            let answers: Vec<String> = outcome.answers.iter().map(ToString::to_string).collect();
            writeln!(
                f,
                "  {what} {:?} {} {}{recorded}: {}",
                p.provider,
                p.tenant,
                p.marker,
                answers.join(" ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

    use super::*;

    fn outcome(marker: &str, answers: &[Answer]) -> Outcome {
        Outcome {
            planned: Planned {
                provider: Provider::ContentstackRsa,
                tenant: "blt1".into(),
                marker: marker.into(),
                resend: Resend::ReSign,
            },
            answers: answers.to_vec(),
        }
    }

    #[test]
    fn the_schedule_is_contentstacks_scaled_with_a_floor_on_the_timeout() {
        let real = Schedule::contentstack(1.0, Duration::from_secs(2));
        assert_eq!(real.retries, [5, 25, 125, 625].map(Duration::from_secs));
        assert_eq!(real.timeout, Duration::from_secs(30));
        assert_eq!(real.span(), Duration::from_secs(780));
        let fast = Schedule::contentstack(0.01, Duration::from_secs(2));
        assert_eq!(fast.retries[0], Duration::from_millis(50));
        assert_eq!(fast.timeout, Duration::from_secs(2));
    }

    #[test]
    fn the_plan_mixes_providers_and_modes_over_every_tenant() {
        let load = Load {
            deliveries: 100,
            window: Duration::ZERO,
            stacks: vec!["s0".into(), "s1".into()],
            spaces: vec!["p0".into()],
            run: "r".into(),
        };
        let plan = load.plan();
        let count = |p: Provider| plan.iter().filter(|d| d.provider == p).count();
        assert_eq!(count(Provider::ContentstackRsa), 40);
        assert_eq!(count(Provider::ContentstackHmac), 30);
        assert_eq!(count(Provider::Contentful), 30);
        assert!(plan.iter().any(|d| d.resend == Resend::SameBytes));
        assert!(plan.iter().any(|d| d.tenant == "s1"));
        let markers: std::collections::HashSet<_> = plan.iter().map(|d| &d.marker).collect();
        assert_eq!(markers.len(), 100, "every marker unique");
        let stacks_only = Load {
            spaces: Vec::new(),
            ..load
        };
        assert!(
            stacks_only
                .plan()
                .iter()
                .all(|d| d.provider.is_contentstack())
        );
    }

    #[test]
    fn the_report_tells_lost_duplicated_and_exhausted_apart() {
        let outcomes = [
            outcome("once", &[Answer::Status(200)]),
            outcome(
                "retried",
                &[Answer::Refused, Answer::Lost, Answer::Status(200)],
            ),
            outcome("lost", &[Answer::Status(200)]),
            outcome("twice", &[Answer::Timeout, Answer::Status(200)]),
            outcome("given-up", &[Answer::Status(503); 5]),
            outcome("given-up-but-recorded", &[Answer::Timeout; 5]),
        ];
        let recorded: HashMap<String, usize> = [
            ("once", 1),
            ("retried", 1),
            ("twice", 2),
            ("given-up-but-recorded", 1),
        ]
        .into_iter()
        .map(|(m, n)| (m.to_owned(), n))
        .collect();
        let report = Report::new(&outcomes, &recorded, 7);
        assert_eq!(report.deliveries, 6);
        assert_eq!(report.attempts, 1 + 3 + 1 + 2 + 5 + 5);
        assert_eq!(report.acknowledged, 4);
        assert_eq!(report.recorded_once, 3);
        assert_eq!(report.lost.len(), 1);
        assert_eq!(report.lost[0].planned.marker, "lost");
        assert_eq!(report.duplicated.len(), 1);
        assert_eq!(report.duplicated[0].1, 2);
        assert_eq!(report.exhausted.len(), 2);
        assert!(!report.is_clean());
        let text = report.to_string();
        assert!(text.contains("lost 1, duplicated 1, exhausted 2"), "{text}");
        assert!(
            text.contains(
                "exhausted ContentstackRsa blt1 given-up (recorded 0): 503 503 503 503 503"
            ),
            "{text}"
        );
        assert_eq!(Answer::Lost.to_string(), "2xx-lost");
        assert!(!Answer::Lost.acknowledged(), "a lost 2xx is retried");
    }
}
