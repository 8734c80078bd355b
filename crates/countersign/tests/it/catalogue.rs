//! The reason codes the docs name are the catalogue's (`countersign_core::reason`), each with
//! its status: the crate docs' table of answers lists every one, and the README, the guides
//! and the examples' READMEs name none with another status.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::collections::BTreeSet;

use countersign::reason::ALL;

/// The codes of the examples' own handlers, which are not the library's.
const EXAMPLE_CODES: [&str; 9] = [
    "stack_required",
    "storage_unavailable",
    "context_missing",
    "invalid_page",
    "oauth_not_configured",
    "oauth_callback_invalid",
    "cma_failed",
    "invalid_state",
    "dead_letter_not_found",
];

/// Every `NNN ... `code`` pair of a table: a status, then the codes in backticks that follow
/// it on its line until the next status.
fn pairs(text: &str) -> BTreeSet<(u16, String)> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let mut status = None;
        for word in line.split(|c: char| c.is_whitespace() || c == '|' || c == ',') {
            let word = word.trim_end_matches([';', '.', ')', ':']);
            if word.len() == 3 && word.bytes().all(|b| b.is_ascii_digit()) {
                status = word.parse().ok();
            } else if let (Some(status), Some(code)) = (
                status,
                word.strip_prefix('`').and_then(|w| w.strip_suffix('`')),
            ) && !code.is_empty()
                && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                && code.contains('_')
            {
                found.insert((status, code.to_owned()));
            }
        }
    }
    found
}

fn catalogue() -> BTreeSet<(u16, String)> {
    ALL.iter()
        .map(|reason| (reason.status.as_u16(), reason.code.to_owned()))
        .collect()
}

#[test]
fn the_crate_docs_answer_table_is_the_catalogue() {
    let docs = include_str!("../../src/lib.rs");
    let start = docs.find("//! | status | codes |").unwrap();
    let end = start + docs[start..].find("\n//!\n").unwrap();
    let table = pairs(&docs[start..end]);
    assert_eq!(table, catalogue());
}

/// Every `NNN `code`` of a text: a status and, right after it, a code in backticks.
fn adjacent_pairs(text: &str) -> BTreeSet<(u16, String)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter_map(|pair| {
            let status = pair[0]
                .parse::<u16>()
                .ok()
                .filter(|s| (100..600).contains(s))?;
            let code = pair[1]
                .trim_end_matches([';', '.', ')', ':', ','])
                .strip_prefix('`')?
                .strip_suffix('`')?;
            let code_like = code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            (code_like && code.contains('_')).then(|| (status, code.to_owned()))
        })
        .collect()
}

#[test]
fn the_readme_names_each_code_with_its_status() {
    let docs = [
        include_str!("../../../../README.md"),
        include_str!("../../../../docs/security.md"),
        include_str!("../../../../docs/contentful.md"),
        include_str!("../../../../docs/contentstack.md"),
        include_str!("../../../../docs/delivery.md"),
        include_str!("../../../../docs/composition.md"),
        include_str!("../../../../docs/testing.md"),
        include_str!("../../../../examples/marketplace-app/README.md"),
        include_str!("../../../../examples/contentful-app/README.md"),
    ];
    let catalogue = catalogue();
    let named = adjacent_pairs(&docs.concat());
    assert!(named.len() > 20, "the docs' tables were read");
    for (status, code) in named {
        if EXAMPLE_CODES.contains(&code.as_str()) {
            continue;
        }
        assert!(
            catalogue.contains(&(status, code.clone())),
            "docs: {status} `{code}` is not in the catalogue"
        );
    }
}
