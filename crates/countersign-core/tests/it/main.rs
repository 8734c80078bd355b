//! The core crate's integration tests, one binary: the rules of each spec, the vendors'
//! vectors, properties, sessions, app identity, typed events and the boxed types, a module
//! each. (`memory_store_bytes` is a binary of its own: it installs a counting global
//! allocator.)

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

mod app_identity_rules;
mod boxed;
mod contentful_props;
mod contentful_rules;
mod contentful_vectors;
mod contentstack_rules;
mod contentstack_vectors;
mod reconcile_records;
mod session_rules;
mod typed_events;
