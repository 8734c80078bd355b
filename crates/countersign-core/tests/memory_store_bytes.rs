//! What an entry of the in-memory replay store costs, counted by the allocator: the figure
//! behind `BYTES_PER_ENTRY` and the default capacity's rate.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::Duration;

use countersign_core::replay::{BYTES_PER_ENTRY, MemoryStore, Owner, ReplayKey, ReplayStore};

/// The system allocator, counting the bytes live.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn key(tenant: u64, n: u64) -> ReplayKey {
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&n.to_le_bytes());
    digest[8..16].copy_from_slice(&tenant.to_le_bytes());
    ReplayKey::from_bytes(digest).in_partition(tenant)
}

fn block<F: std::future::Future>(future: F) -> F::Output {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => unreachable!("memory store futures are ready"),
    }
}

#[test]
fn memory_store_entries_cost_at_most_bytes_per_entry() {
    let owner = Owner::from_token("owner");
    let mut worst = 0.0f64;
    // Handled deliveries of a thousand tenants, measured at sizes on either side of the hash
    // table's growth (where its spare room is largest).
    for entries in [
        1_000u64, 1_793, 1_800, 14_336, 14_400, 57_344, 57_400, 200_000,
    ] {
        let before = ALLOCATOR.allocated();
        let store = MemoryStore::new(1 << 20).with_tenant_share(1 << 20);
        for n in 0..entries {
            let key = key(n % 1_000, n);
            block(store.claim(&key, &owner, Duration::from_secs(3))).unwrap();
            block(store.complete(&key, &owner, Duration::from_secs(1_920))).unwrap();
        }
        let per_entry = (ALLOCATOR.allocated() - before) as f64 / entries as f64;
        println!("{entries} entries: {per_entry:.0} bytes each");
        worst = worst.max(per_entry);
        drop(store);
    }
    println!("worst: {worst:.0} bytes per entry; BYTES_PER_ENTRY = {BYTES_PER_ENTRY}");
    assert!(
        worst <= BYTES_PER_ENTRY as f64,
        "{worst:.0} bytes per entry"
    );
}
