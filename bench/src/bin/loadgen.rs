//! The load generator of the end-to-end benchmark: drives one server at saturation with
//! freshly signed requests and reports requests per second and latency percentiles.
//!
//! `loadgen <bare|contentful|contentstack> <url> <concurrency> <seconds>`: a 1 KiB JSON body;
//! Contentful requests are signed one by one, Contentstack ones come from a pool of distinct
//! signed deliveries (RSA signing costs the client more than verifying costs the server).
//! `loadgen uploads <url> <count> <bytes>`: `count` concurrent uploads of `bytes` each.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use countersign::contentful::{self, Context, RequestToSign, SigningSecret};
use countersign::contentstack::{RSA_SIGNATURE_HEADER, SaltLength, SigningKey, WebhookBody};
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
                contentful::sign(&secret, &to_sign, SystemTime::now(), &Context::default());
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

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, url) = (args[1].clone(), args[2].clone());
    if mode == "uploads" {
        uploads(&url, args[3].parse().unwrap(), args[4].parse().unwrap()).await;
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
