//! `countersign keygen`, `contentful secret`, `send` and `inspect`, run as a binary: round
//! trips, a real local server built with the library, and one captured request per diagnosis.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use axum::Router;
use axum::routing::post;
use countersign::contentful::{Context, RequestToSign, RequestVerifier, SigningSecret, sign};
use countersign::contentstack::{SaltLength, SigningKey, StaticKeys, WebhookVerifier};
use countersign::{
    ContentfulRequest, ContentfulRequestLayer, ContentstackWebhook, ContentstackWebhookLayer,
};
use serde_json::Value;

const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const KEYS: &str = "../countersign-core/tests/data/keys";

fn countersign(args: &[&str]) -> Output {
    Command::cargo_bin("countersign")
        .unwrap()
        .env_remove("COUNTERSIGN_CONTENTFUL_SECRET")
        .env_remove("COUNTERSIGN_CONTENTSTACK_HMAC_SECRET")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("countersign-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

use inspect::{capture, inspect_contentful};

mod help;
mod inspect;
mod keys_and_signing;
mod send;
