//! The report of `inspect`: a checklist for people (coloured on a terminal unless `NO_COLOR`),
//! or one JSON object.

use std::io::IsTerminal as _;

use serde_json::json;

use super::Report;
use crate::common::{Outcome, print_line};

pub(super) fn print_report(report: &Report, as_json: bool) -> Outcome {
    if as_json {
        let checks: Vec<_> = report
            .checks
            .iter()
            .map(|c| json!({ "check": c.name, "ok": c.ok, "detail": c.detail }))
            .collect();
        let out = json!({
            "verified": report.rejected.is_none(),
            "code": report.rejected.as_ref().map(|(code, _)| *code),
            "checks": checks,
            "likely_causes": report.causes,
        });
        return print_line(&out.to_string());
    }
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let paint = |ok: bool, text: &str| match (color, ok) {
        (false, _) => text.to_owned(),
        (true, true) => format!("\x1b[32m{text}\x1b[0m"),
        (true, false) => format!("\x1b[31m{text}\x1b[0m"),
    };
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    for check in &report.checks {
        let mark = paint(check.ok, if check.ok { "ok  " } else { "FAIL" });
        print_line(&format!("{mark}  {:<width$}  {}", check.name, check.detail))?;
    }
    let verdict = match &report.rejected {
        None => paint(true, "verified"),
        Some((code, _)) => paint(false, &format!("rejected: {code}")),
    };
    print_line(&format!("\n{verdict}"))?;
    for cause in &report.causes {
        print_line(&format!("likely cause: {cause}"))?;
    }
    Ok(())
}
