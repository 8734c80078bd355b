//! The workspace's end-to-end and interoperability tests, one binary, a module by topic: the
//! vendors' reference code run live (`interop/node`), the example backends as processes
//! (browser, faults, OAuth, the fleet), app identity against a local Contentful, the
//! PostgreSQL inbox of a fleet and PostgreSQL over TLS. (The chaos run is a binary of its own:
//! `scripts/chaos` runs it at full scale.)

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

mod app_identity;
mod contentful_interop;
mod contentstack_interop;
mod delivery_interop;
mod examples_e2e;
mod inbox_postgres;
mod postgres_tls;
