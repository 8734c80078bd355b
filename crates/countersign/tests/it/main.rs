//! The tower crate's integration tests, one binary, a module by topic: the layers over real
//! HTTP, attacks and malicious tenants, sessions, replay stores (memory and a real Redis),
//! OAuth against a local Developer Hub, the test kit, logging and the
//! catalogue of reasons. (`metrics` is a binary of its own: it installs the process's global
//! metrics recorder.)

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

mod common;

mod attacks;
mod catalogue;
mod contentful_layer;
mod contentstack_layer;
mod contentstack_oauth;
mod delivery_life;
mod guards;
#[cfg(all(feature = "lambda", feature = "testing"))]
mod lambda;
mod logging;
mod malicious_tenant;
mod replay_memory;
mod replay_redis;
mod sessions;
mod stack;
mod testing_kit;
mod well_known;
