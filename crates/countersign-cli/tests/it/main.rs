//! The `countersign` binary, run as a process against the contract in `shared/spec/cli.md`:
//! its Contentstack and Contentful commands and its tools, a module each, in one binary.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

mod contentful_cli;
mod contentstack_cli;
mod tools_cli;
