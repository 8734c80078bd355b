//! The delivery stage: each planned delivery sent on the schedule, its answers kept.

use super::*;

/// Plays the providers against a fleet.
pub struct Simulator {
    fleet: Fleet,
    credentials: Credentials,
    schedule: Schedule,
    contentful_schedule: Schedule,
    client: reqwest::Client,
    contentful_client: reqwest::Client,
    log: Mutex<Vec<Attempt>>,
    turn: [AtomicUsize; 2],
    failures: Mutex<Failures>,
    /// Lose one acknowledgement in this many (0: none).
    lose_one_in: usize,
    acknowledgements: AtomicUsize,
    lost_answers: AtomicUsize,
}

/// A client that gives up on an answer after the schedule's timeout.
fn client(schedule: &Schedule) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(schedule.timeout)
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
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
        // Contentful's policy at the scale of the Contentstack schedule given.
        let scale = schedule.retries.first().map_or(1.0, |first| {
            first.as_secs_f64() / RETRY_SCHEDULE[0].as_secs_f64()
        });
        let contentful_schedule = Schedule::contentful(scale, schedule.timeout);
        Self {
            fleet,
            credentials,
            client: client(&schedule),
            contentful_client: client(&contentful_schedule),
            schedule,
            contentful_schedule,
            log: Mutex::default(),
            turn: [AtomicUsize::new(0), AtomicUsize::new(0)],
            failures: Mutex::default(),
            lose_one_in: 0,
            acknowledgements: AtomicUsize::new(0),
            lost_answers: AtomicUsize::new(0),
        }
    }

    /// Contentful's deliveries on `schedule` rather than its published policy at the scale of
    /// Contentstack's.
    #[must_use]
    pub fn with_contentful_schedule(mut self, schedule: Schedule) -> Self {
        self.contentful_client = client(&schedule);
        self.contentful_schedule = schedule;
        self
    }

    /// Every attempt made so far, in the order their answers came.
    ///
    /// # Panics
    /// When a thread panicked while holding the log.
    #[must_use]
    pub fn attempts(&self) -> Vec<Attempt> {
        self.log.lock().expect("the attempt log").clone()
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
        let schedule = if planned.provider.is_contentstack() {
            &self.schedule
        } else {
            &self.contentful_schedule
        };
        for attempt in 0..=schedule.retries.len() {
            if attempt > 0 {
                tokio::time::sleep(schedule.retries[attempt - 1]).await;
            }
            let headers = match (&first, planned.resend, planned.provider) {
                (Some(headers), Resend::SameBytes, provider) if provider.is_contentstack() => {
                    headers.clone()
                }
                _ => self.sign(&planned, &body, &idempotency_key),
            };
            first.get_or_insert_with(|| headers.clone());
            let sent = std::time::Instant::now();
            let mut answer = self.attempt(planned.provider, &headers, &body).await;
            self.log.lock().expect("the attempt log").push(Attempt {
                contentstack: planned.provider.is_contentstack(),
                sent,
                took: sent.elapsed(),
                acknowledged: answer.acknowledged(),
            });
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

    async fn attempt(
        &self,
        provider: Provider,
        headers: &[(String, String)],
        body: &str,
    ) -> Answer {
        let client = if provider.is_contentstack() {
            &self.client
        } else {
            &self.contentful_client
        };
        let mut request = client.post(self.next(provider)).body(body.to_owned());
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

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("fleet", &self.fleet)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}
