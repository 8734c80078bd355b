//! `countersign contentful sign|verify`, run as a binary, against the contract in
//! `shared/spec/cli.md`.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use assert_cmd::Command;
use serde_json::Value;

const SECRET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn countersign() -> Command {
    let mut cmd = Command::cargo_bin("countersign").unwrap();
    cmd.env_remove("COUNTERSIGN_CONTENTFUL_SECRET");
    cmd
}

fn stdout_json(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `countersign contentful sign` of `POST /hook?x=1` with `extra` arguments.
fn sign(extra: &[&str]) -> std::process::Output {
    countersign()
        .args(["contentful", "sign", "--secret", SECRET])
        .args(["--method", "POST", "--path", "/hook?x=1"])
        .args(["--timestamp", "1700000000000", "--body", "{}"])
        .args(extra)
        .output()
        .unwrap()
}

/// Signs with the CLI and returns the headers it printed, as `-H` arguments.
fn signed_headers(extra: &[&str]) -> Vec<String> {
    let output = sign(extra);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout_json(&output)
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| format!("{name}: {}", value.as_str().unwrap()))
        .collect()
}

fn verify(headers: &[String], extra: &[&str]) -> std::process::Output {
    let mut cmd = countersign();
    cmd.args([
        "contentful",
        "verify",
        "--method",
        "POST",
        "--path",
        "/hook?x=1",
        "--body",
        "{}",
    ]);
    cmd.args(["--now", "1700000001000"]);
    for header in headers {
        cmd.args(["-H", header]);
    }
    cmd.args(extra).output().unwrap()
}

mod input_and_formats;
mod refusals;
mod signing;
