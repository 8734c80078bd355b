//! `countersign contentstack ...`, run as a binary, against the contract in
//! `shared/spec/cli.md`.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

const DATA: &str = "../countersign-core/tests/data";

fn data(path: &str) -> PathBuf {
    PathBuf::from(DATA).join(path)
}

fn key(name: &str) -> String {
    data(&format!("keys/{name}")).to_str().unwrap().to_owned()
}

fn vectors() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data("contentstack-vectors.json")).unwrap())
        .unwrap()
}

fn vector<'a>(v: &'a Value, section: &str, name: &str) -> &'a Value {
    v[section]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

fn countersign(args: &[&str]) -> Output {
    Command::cargo_bin("countersign")
        .unwrap()
        .env_remove("COUNTERSIGN_CONTENTSTACK_HMAC_SECRET")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const BODY: &str = r#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","api_key":"blt1","event":"publish","data":{}}"#;
const SOON: &str = "2024-07-25T08:48:50Z";

mod app_tokens;
mod hmac;
mod input_and_help;
mod oauth;
mod rsa;
mod sending;
