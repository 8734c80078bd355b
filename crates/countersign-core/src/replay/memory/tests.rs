//! The in-memory store's rules, one test each.

use super::*;

fn key(n: u64) -> ReplayKey {
    tenant_key(0, n)
}

fn tenant_key(tenant: u64, n: u64) -> ReplayKey {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    bytes[8..16].copy_from_slice(&tenant.to_le_bytes());
    ReplayKey::from_bytes(bytes).in_partition(tenant)
}

/// A store whose one tenant may fill it.
fn one_tenant(capacity: usize) -> MemoryStore {
    MemoryStore::new(capacity).with_tenant_share(capacity)
}

const TTL: Duration = Duration::from_secs(60);

const LEASE: Duration = Duration::from_secs(3);
const MS: Duration = Duration::from_millis(1);

#[test]
fn new_then_in_flight_then_done() {
    let store = one_tenant(10);
    let (a, b) = (Owner::random(), Owner::random());
    let now = Instant::now();
    assert_eq!(store.claim_now(&key(1), &a, LEASE, now), Claim::Claimed);
    assert_eq!(store.claim_now(&key(1), &b, LEASE, now), Claim::InFlight);
    store.complete_now(&key(1), &a, TTL, now);
    assert_eq!(store.claim_now(&key(1), &b, LEASE, now), Claim::Done);
}

#[test]
fn a_release_lets_the_retry_run_but_only_the_owner_may_release() {
    let store = one_tenant(10);
    let (a, b) = (Owner::random(), Owner::random());
    let now = Instant::now();
    assert_eq!(store.claim_now(&key(1), &a, LEASE, now), Claim::Claimed);
    store.release_now(&key(1), &b);
    assert_eq!(
        store.claim_now(&key(1), &b, LEASE, now),
        Claim::InFlight,
        "another owner cannot release"
    );
    store.complete_now(&key(1), &b, TTL, now);
    assert_eq!(
        store.claim_now(&key(1), &b, LEASE, now),
        Claim::InFlight,
        "nor complete"
    );
    store.release_now(&key(1), &a);
    assert_eq!(store.claim_now(&key(1), &b, LEASE, now), Claim::Claimed);
}

#[test]
fn an_unrenewed_lease_lapses_and_the_retry_is_claimed() {
    let store = one_tenant(10);
    let (dead, retry) = (Owner::random(), Owner::random());
    let now = Instant::now();
    assert_eq!(store.claim_now(&key(1), &dead, LEASE, now), Claim::Claimed);
    assert_eq!(
        store.claim_now(&key(1), &retry, LEASE, now + LEASE - MS),
        Claim::InFlight
    );
    assert_eq!(
        store.claim_now(&key(1), &retry, LEASE, now + LEASE),
        Claim::Claimed
    );
    assert!(
        !store.renew_now(&key(1), &dead, LEASE, now + LEASE),
        "the lapsed owner learns it lost the claim"
    );
}

#[test]
fn only_the_owner_renews_and_a_renewed_lease_lives_on() {
    let store = one_tenant(10);
    let (a, b) = (Owner::random(), Owner::random());
    let now = Instant::now();
    store.claim_now(&key(1), &a, LEASE, now);
    assert!(!store.renew_now(&key(1), &b, LEASE, now + MS));
    assert!(store.renew_now(&key(1), &a, LEASE, now + 2 * MS));
    assert_eq!(
        store.claim_now(&key(1), &b, LEASE, now + LEASE + MS),
        Claim::InFlight,
        "renewed past its first end"
    );
}

#[test]
fn claiming_again_as_the_owner_is_idempotent() {
    let store = one_tenant(1);
    let owner = Owner::random();
    let now = Instant::now();
    assert_eq!(store.claim_now(&key(1), &owner, LEASE, now), Claim::Claimed);
    assert_eq!(
        store.claim_now(&key(1), &owner, LEASE, now + MS),
        Claim::Claimed,
        "an owner whose answer was lost finds it holds the claim (even in a full store)"
    );
}

#[test]
fn a_lapsed_claim_is_still_marked_done_but_another_owners_claim_is_left_alone() {
    let store = one_tenant(10);
    let (slow, other) = (Owner::random(), Owner::random());
    let now = Instant::now();
    store.claim_now(&key(1), &slow, LEASE, now);
    store.complete_now(&key(1), &slow, TTL, now + LEASE);
    assert_eq!(
        store.claim_now(&key(1), &other, LEASE, now + LEASE),
        Claim::Done
    );

    store.claim_now(&key(2), &slow, LEASE, now);
    store.claim_now(&key(2), &other, LEASE, now + LEASE);
    store.complete_now(&key(2), &slow, TTL, now + LEASE);
    assert_eq!(
        store.claim_now(&key(2), &slow, LEASE, now + LEASE),
        Claim::InFlight,
        "the other owner's outcome decides"
    );
}

#[test]
fn a_huge_window_saturates_instead_of_panicking() {
    let store = one_tenant(10);
    let owner = Owner::random();
    let now = Instant::now();
    assert_eq!(
        store.claim_now(&key(1), &owner, Duration::MAX, now),
        Claim::Claimed
    );
    store.complete_now(&key(1), &owner, Duration::MAX, now);
    assert_eq!(
        store.claim_now(&key(1), &Owner::random(), LEASE, now + TTL),
        Claim::Done
    );
}

#[test]
fn done_entries_expire_with_their_ttl() {
    let store = one_tenant(10);
    let (owner, later) = (Owner::random(), Owner::random());
    let now = Instant::now();
    assert_eq!(store.claim_now(&key(1), &owner, LEASE, now), Claim::Claimed);
    store.complete_now(&key(1), &owner, TTL, now);
    assert_eq!(
        store.claim_now(&key(1), &later, LEASE, now + TTL - MS),
        Claim::Done
    );
    assert_eq!(
        store.claim_now(&key(1), &later, LEASE, now + TTL),
        Claim::Claimed
    );
}

#[test]
fn when_full_expired_entries_go_first() {
    let store = MemoryStore::new(2).with_tenant_share(2);
    let owner = Owner::random();
    let now = Instant::now();
    store.claim_now(&key(1), &owner, Duration::from_secs(1), now);
    store.claim_now(&key(2), &owner, TTL, now);
    assert_eq!(
        store.claim_now(&key(3), &owner, TTL, now + Duration::from_secs(2)),
        Claim::Claimed
    );
    assert_eq!(store.len(), 2);
}

#[test]
fn when_full_of_live_entries_new_ones_are_refused_or_the_oldest_done_evicted() {
    let (owner, other) = (Owner::random(), Owner::random());
    let now = Instant::now();
    let refusing = MemoryStore::new(2).with_tenant_share(2);
    refusing.claim_now(&key(1), &owner, TTL, now);
    refusing.claim_now(&key(2), &owner, TTL, now);
    assert_eq!(refusing.claim_now(&key(3), &owner, TTL, now), Claim::Full);

    let evicting = MemoryStore::new(2)
        .with_tenant_share(2)
        .with_full_policy(FullPolicy::EvictOldest);
    evicting.claim_now(&key(1), &owner, LEASE, now);
    evicting.complete_now(&key(1), &owner, Duration::from_secs(30), now);
    evicting.claim_now(&key(2), &owner, LEASE, now);
    evicting.complete_now(&key(2), &owner, TTL, now);
    assert_eq!(
        evicting.claim_now(&key(3), &owner, TTL, now),
        Claim::Claimed
    );
    assert_eq!(
        evicting.claim_now(&key(1), &other, TTL, now),
        Claim::Claimed,
        "the oldest handled delivery was forgotten"
    );
    assert_eq!(evicting.len(), 2);
}

#[test]
fn evict_oldest_never_evicts_a_claim_in_flight() {
    let (first, second) = (Owner::random(), Owner::random());
    let now = Instant::now();
    let store = MemoryStore::new(2)
        .with_tenant_share(2)
        .with_full_policy(FullPolicy::EvictOldest);
    store.claim_now(&key(1), &first, LEASE, now);
    store.claim_now(&key(2), &first, TTL, now);
    assert_eq!(
        store.claim_now(&key(3), &first, TTL, now),
        Claim::Full,
        "every entry is in flight: nothing may go"
    );
    assert_eq!(
        store.claim_now(&key(1), &second, LEASE, now),
        Claim::InFlight,
        "the claim still keeps a second handler out"
    );
}

#[test]
fn no_tenant_holds_more_than_its_share_and_the_others_are_served() {
    let owner = Owner::random();
    let now = Instant::now();
    let store = MemoryStore::new(10).with_tenant_share(5);
    assert_eq!(
        MemoryStore::new(16).tenant_share(),
        2,
        "an eighth by default"
    );
    for n in 0..5 {
        assert_eq!(
            store.claim_now(&tenant_key(1, n), &owner, TTL, now),
            Claim::Claimed
        );
    }
    assert_eq!(
        store.claim_now(&tenant_key(1, 5), &owner, TTL, now),
        Claim::TenantFull
    );
    for n in 0..5 {
        assert_eq!(
            store.claim_now(&tenant_key(2, n), &owner, TTL, now),
            Claim::Claimed,
            "another tenant is served"
        );
    }
    // The flooding tenant's entries expire, and it is served again.
    assert_eq!(
        store.claim_now(&tenant_key(1, 5), &owner, TTL, now + TTL),
        Claim::Claimed
    );
}

#[test]
fn a_tenant_at_its_share_never_evicts_another_tenants_entry() {
    let owner = Owner::random();
    let now = Instant::now();
    let store = MemoryStore::new(4)
        .with_tenant_share(2)
        .with_full_policy(FullPolicy::EvictOldest);
    let handle = |key: ReplayKey, ttl: Duration| {
        assert_eq!(store.claim_now(&key, &owner, LEASE, now), Claim::Claimed);
        store.complete_now(&key, &owner, ttl, now);
    };
    // The oldest handled delivery is the quiet tenant's.
    handle(tenant_key(2, 0), Duration::from_secs(30));
    handle(tenant_key(1, 0), TTL);
    handle(tenant_key(1, 1), TTL);
    assert_eq!(
        store.claim_now(&tenant_key(1, 2), &owner, TTL, now),
        Claim::TenantFull,
        "the flooding tenant may not evict the quiet tenant's delivery"
    );
    assert_eq!(
        store.claim_now(&tenant_key(2, 0), &Owner::random(), LEASE, now),
        Claim::Done,
        "the quiet tenant's delivery is still remembered"
    );
    // Once its own is the oldest, it makes room for itself.
    assert_eq!(
        store.claim_now(
            &tenant_key(1, 2),
            &owner,
            TTL,
            now + Duration::from_secs(30)
        ),
        Claim::Claimed
    );
}

#[test]
fn room_moves_from_larger_tenants_to_smaller_ones_never_back() {
    let owner = Owner::random();
    let now = Instant::now();
    let (soon, late) = (Duration::from_secs(30), TTL);
    // The quiet tenant (1) holds one handled delivery, the busy one (2) three; `quiet_first`
    // says whose expire first.
    let store = |quiet_first: bool| {
        let store = MemoryStore::new(4)
            .with_tenant_share(4)
            .with_full_policy(FullPolicy::EvictOldest);
        let handle = |key: ReplayKey, ttl| {
            assert_eq!(store.claim_now(&key, &owner, LEASE, now), Claim::Claimed);
            store.complete_now(&key, &owner, ttl, now);
        };
        handle(tenant_key(1, 0), if quiet_first { soon } else { late });
        for n in 0..3 {
            handle(tenant_key(2, n), if quiet_first { late } else { soon });
        }
        store
    };
    // A fresh tenant (and one hand can make many) may not take the quiet one's room...
    let quiet_oldest = store(true);
    assert_eq!(
        quiet_oldest.claim_now(&tenant_key(3, 0), &owner, TTL, now),
        Claim::Full
    );
    assert_eq!(
        quiet_oldest.claim_now(&tenant_key(1, 0), &Owner::random(), LEASE, now),
        Claim::Done
    );
    // ... but takes the busy one's.
    let busy_oldest = store(false);
    assert_eq!(
        busy_oldest.claim_now(&tenant_key(3, 0), &owner, TTL, now),
        Claim::Claimed
    );
    assert_eq!(
        busy_oldest.claim_now(&tenant_key(1, 0), &Owner::random(), LEASE, now),
        Claim::Done
    );
}

#[test]
fn the_room_in_bytes_is_a_number_of_entries() {
    assert_eq!(
        MemoryStore::default().capacity(),
        DEFAULT_CAPACITY_BYTES / BYTES_PER_ENTRY
    );
    assert_eq!(MemoryStore::with_capacity_bytes(0).capacity(), 1);
}
