//! The load generator of the end-to-end benchmark: drives one server at saturation with
//! freshly signed requests and reports requests per second and latency percentiles.
//!
//! `loadgen <bare|contentful|contentstack> <url> <concurrency> <seconds>`: a 1 KiB JSON body;
//! Contentful requests are signed one by one, Contentstack ones come from a pool of distinct
//! signed deliveries (RSA signing costs the client more than verifying costs the server).
//! `loadgen uploads <url> <count> <bytes>`: `count` concurrent uploads of `bytes` each.
//! `loadgen soak <base-url> <concurrency> <seconds> <hmac-secret> <app-uid>`: the soak's mix
//! against `marketplace-app` (installed on one stack first): of every 20 requests, 12 new
//! deliveries signed with HMAC, 4 duplicates of a recent one (the same bytes and headers), 3
//! forged with another secret and 1 with a bad RSA signature; prints the answers per kind.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use countersign::contentful::{self, Context, RequestToSign, SigningSecret};
use countersign::contentstack::{
    HMAC_SIGNATURE_HEADER, HmacSecret, RSA_SIGNATURE_HEADER, SaltLength, SigningKey, WebhookBody,
};
use http::Method;
use serde_json::json;

const PRIVATE: &str =
    include_str!("../../../crates/countersign-core/tests/data/keys/contentstack-a.private.pem");
const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn body(n: usize) -> String {
    let filler = "x".repeat(900);
    WebhookBody::new("entry", "publish")
        .with_api_key("blt1")
        .with_data(&serde_json::json!({"n": n, "text": filler}))
        .to_json(SystemTime::now())
}

fn request(mode: &str, n: usize, pool: &[(String, String)]) -> (String, Vec<(String, String)>) {
    match mode {
        "contentful" => {
            let body = body(n);
            let secret = SigningSecret::new(SECRET).unwrap();
            let to_sign = RequestToSign::new(Method::POST, "/webhook")
                .with_header("content-type", "application/json")
                .with_body(body.as_bytes());
            let signed =
                contentful::sign(&secret, &to_sign, SystemTime::now(), &Context::default())
                    .expect("the header values move no boundary");
            let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
            headers.extend(signed.iter().map(|(n, v)| (n.to_owned(), v.to_owned())));
            (body, headers)
        }
        "contentstack" => {
            let (body, signature) = &pool[n % pool.len()];
            (
                body.clone(),
                vec![(RSA_SIGNATURE_HEADER.to_owned(), signature.clone())],
            )
        }
        _ => (
            body(n),
            vec![("content-type".to_owned(), "application/json".to_owned())],
        ),
    }
}

async fn uploads(url: &str, count: usize, bytes: usize) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let payload = Arc::new(vec![b'x'; bytes]);
    let start = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (client, payload, url) = (client.clone(), payload.clone(), url.to_owned());
            tokio::spawn(async move {
                client
                    .post(url)
                    .body(payload.to_vec())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for task in tasks {
        let status = task.await.unwrap().map_or(0, |s| s);
        *statuses.entry(status).or_insert(0) += 1;
    }
    println!(
        "{}",
        json!({"uploads": count, "bytes": bytes, "seconds": start.elapsed().as_secs_f64(), "statuses": statuses})
    );
}

/// One request of the soak's mix: its kind, body and headers.
fn soak_request(
    n: usize,
    secret: &HmacSecret,
    forger: &HmacSecret,
    recent: &std::sync::Mutex<std::collections::VecDeque<(String, String)>>,
) -> (&'static str, String, Vec<(String, String)>) {
    let fresh = |secret: &HmacSecret| {
        let body = WebhookBody::new("entry", "publish")
            .with_api_key(SOAK_STACK)
            .with_data(&json!({"entry": {"uid": format!("soak-{n}")}, "text": "x".repeat(400)}))
            .to_json(SystemTime::now());
        let signature = secret.sign(body.as_bytes(), SystemTime::now());
        (body, signature)
    };
    let hmac = |signature: String| vec![(HMAC_SIGNATURE_HEADER.to_owned(), signature)];
    match n % 20 {
        0..=11 => {
            let (body, signature) = fresh(secret);
            let mut recent = recent.lock().unwrap();
            recent.push_back((body.clone(), signature.clone()));
            if recent.len() > 64 {
                recent.pop_front();
            }
            ("valid", body, hmac(signature))
        }
        12..=15 => {
            let recent = recent.lock().unwrap();
            match recent.get(n % recent.len().max(1)) {
                Some((body, signature)) => ("duplicate", body.clone(), hmac(signature.clone())),
                None => ("duplicate", String::new(), Vec::new()),
            }
        }
        16..=18 => {
            let (body, signature) = fresh(forger);
            ("forged", body, hmac(signature))
        }
        _ => {
            let (body, _) = fresh(secret);
            let bad = vec![(
                RSA_SIGNATURE_HEADER.to_owned(),
                format!("v1={}", "A".repeat(344)),
            )];
            ("forged", body, bad)
        }
    }
}

const SOAK_STACK: &str = "bltsoak";

async fn soak(base: &str, concurrency: usize, seconds: f64, secret: &str, app_uid: &str) {
    let client = reqwest::Client::new();
    let url = format!("{base}/webhooks/contentstack");
    let secret = HmacSecret::new(secret).unwrap();
    let install = WebhookBody::new("app_installation", "install")
        .with_api_key(SOAK_STACK)
        .with_data(&json!({"app_installation": {"app_uid": app_uid, "target": {"type": "stack", "uid": SOAK_STACK}}}))
        .to_json(SystemTime::now());
    let installed = client
        .post(&url)
        .header(
            HMAC_SIGNATURE_HEADER,
            secret.sign(install.as_bytes(), SystemTime::now()),
        )
        .body(install)
        .send()
        .await
        .unwrap();
    assert!(
        installed.status().is_success(),
        "installed: {}",
        installed.status()
    );
    let forger = HmacSecret::new("a-secret-that-is-not-the-apps-secret").unwrap();
    let shared = Arc::new((
        secret,
        forger,
        std::sync::Mutex::new(std::collections::VecDeque::new()),
    ));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (client, url, shared) = (client.clone(), url.clone(), shared.clone());
            tokio::spawn(async move {
                let mut answers = std::collections::BTreeMap::<String, usize>::new();
                let mut n = worker;
                while Instant::now() < deadline {
                    let (kind, body, headers) = soak_request(n, &shared.0, &shared.1, &shared.2);
                    n += concurrency;
                    let mut builder = client.post(&url).header("content-type", "application/json");
                    for (name, value) in &headers {
                        builder = builder.header(name.as_str(), value.as_str());
                    }
                    let status = builder
                        .body(body)
                        .send()
                        .await
                        .map_or(0, |response| response.status().as_u16());
                    *answers.entry(format!("{kind} {status}")).or_insert(0) += 1;
                }
                answers
            })
        })
        .collect();
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for task in tasks {
        for (answer, count) in task.await.unwrap() {
            *answers.entry(answer).or_insert(0) += count;
        }
    }
    let requests: usize = answers.values().sum();
    println!(
        "{}",
        json!({"mode": "soak", "requests": requests, "rps": requests as f64 / seconds, "answers": answers})
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, url) = (args[1].clone(), args[2].clone());
    if mode == "uploads" {
        uploads(&url, args[3].parse().unwrap(), args[4].parse().unwrap()).await;
        return;
    }
    if mode == "soak" {
        let (concurrency, seconds) = (args[3].parse().unwrap(), args[4].parse().unwrap());
        soak(&url, concurrency, seconds, &args[5], &args[6]).await;
        return;
    }
    let concurrency: usize = args[3].parse().unwrap();
    let seconds: f64 = args[4].parse().unwrap();
    let pool: Arc<Vec<(String, String)>> = Arc::new(if mode == "contentstack" {
        let key = SigningKey::from_pem(PRIVATE).unwrap();
        (0..512)
            .map(|n| {
                let body = body(n);
                let signature = key
                    .sign_webhook(body.as_bytes(), SaltLength::Digest)
                    .unwrap();
                (body, signature)
            })
            .collect()
    } else {
        Vec::new()
    });
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (client, url, mode, pool) =
                (client.clone(), url.clone(), mode.clone(), pool.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors, mut n) = (Vec::new(), 0usize, worker * 1_000_000);
                while Instant::now() < deadline {
                    let (body, headers) = request(&mode, n, &pool);
                    n += 1;
                    let mut builder = client.post(&url);
                    for (name, value) in &headers {
                        builder = builder.header(name.as_str(), value.as_str());
                    }
                    let sent = Instant::now();
                    match builder.body(body).send().await {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.bytes().await;
                            latencies.push(sent.elapsed().as_micros() as u32);
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{}",
        json!({
            "mode": mode, "requests": latencies.len(), "errors": errors,
            "rps": latencies.len() as f64 / seconds, "p50_us": pct(0.50), "p99_us": pct(0.99),
        })
    );
}
