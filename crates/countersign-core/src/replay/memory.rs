//! The in-memory replay store: one process, bounded.

use std::collections::{BTreeMap, HashMap};
use std::future::{Future, ready};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Claim, Owner, ReplayKey, ReplayStore, StoreError};

/// What a full [`MemoryStore`] does when a new delivery comes and every entry is still live.
///
/// - [`RefuseNew`](FullPolicy::RefuseNew) (the default) answers 503, so the sender retries
///   later: no replay is ever let through, at the cost of refusing deliveries while the store
///   is full. Only verified deliveries take entries, so only the provider's own traffic (or
///   replays of it, which are refused anyway) can fill it.
/// - [`EvictOldest`](FullPolicy::EvictOldest) forgets the entry closest to expiry: every new
///   delivery is handled, but a replay of an evicted delivery within its signature's window
///   would be handled again. Choose it only when availability matters more than exactly-once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FullPolicy {
    /// Refuse new deliveries with 503 until entries expire.
    #[default]
    RefuseNew,
    /// Forget the entry closest to expiry.
    EvictOldest,
}

#[derive(Debug)]
struct Entry {
    /// `Some(owner)` while in flight, `None` once done.
    in_flight: Option<Owner>,
    /// The end of the lease while in flight, of the window once done.
    expires: Instant,
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<ReplayKey, Entry>,
    /// Entries by expiry, to drop expired ones first and find the oldest.
    by_expiry: BTreeMap<(Instant, u64), ReplayKey>,
    seq: u64,
}

impl Inner {
    fn remove(&mut self, key: &ReplayKey) {
        if let Some(entry) = self.entries.remove(key) {
            self.by_expiry.remove(&(entry.expires, entry.seq));
        }
    }

    /// The entry of `key` unless it has expired (an expired one is dropped).
    fn live(&mut self, key: &ReplayKey, now: Instant) -> Option<&Entry> {
        if self
            .entries
            .get(key)
            .is_some_and(|entry| entry.expires <= now)
        {
            self.remove(key);
        }
        self.entries.get(key)
    }

    /// Puts `key` in the state `in_flight` until `expires`, replacing what it had.
    fn put(&mut self, key: &ReplayKey, in_flight: Option<Owner>, expires: Instant) {
        self.remove(key);
        self.seq += 1;
        let seq = self.seq;
        self.by_expiry.insert((expires, seq), *key);
        self.entries.insert(
            *key,
            Entry {
                in_flight,
                expires,
                seq,
            },
        );
    }

    fn purge_expired(&mut self, now: Instant) {
        while let Some((&(expires, _), _)) = self.by_expiry.first_key_value() {
            if expires > now {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.entries.remove(&key);
            }
        }
    }

    /// Whether one more entry fits; when full, expired entries go first, then `policy` says.
    fn make_room(&mut self, capacity: usize, policy: FullPolicy, now: Instant) -> bool {
        if self.entries.len() >= capacity {
            self.purge_expired(now);
        }
        if self.entries.len() < capacity {
            return true;
        }
        match policy {
            FullPolicy::RefuseNew => false,
            FullPolicy::EvictOldest => {
                if let Some((_, oldest)) = self.by_expiry.pop_first() {
                    self.entries.remove(&oldest);
                }
                true
            }
        }
    }
}

/// Remembers deliveries in this process's memory, at most `capacity` of them. Expired entries
/// go first; see [`FullPolicy`] for what happens when every entry is live.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    capacity: usize,
    policy: FullPolicy,
}

impl MemoryStore {
    /// A store of at most `capacity` entries (at least 1), refusing new deliveries when full.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            policy: FullPolicy::default(),
        }
    }

    /// What to do when full of live entries.
    #[must_use]
    pub fn with_full_policy(mut self, policy: FullPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How many entries it holds now (expired ones included until they are purged).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether it holds no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The synchronous heart of [`ReplayStore::claim`].
    pub(crate) fn claim_now(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
        now: Instant,
    ) -> Claim {
        let mut inner = self.lock();
        match inner.live(key, now).map(|entry| entry.in_flight.as_ref()) {
            Some(None) => return Claim::Done,
            Some(Some(holder)) if holder != owner => return Claim::InFlight,
            Some(Some(_)) => {}
            None => {
                if !inner.make_room(self.capacity, self.policy, now) {
                    return Claim::Full;
                }
            }
        }
        inner.put(key, Some(owner.clone()), later(now, lease));
        Claim::Claimed
    }

    /// The synchronous heart of [`ReplayStore::renew`].
    pub(crate) fn renew_now(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
        now: Instant,
    ) -> bool {
        let mut inner = self.lock();
        let ours = inner
            .live(key, now)
            .is_some_and(|entry| entry.in_flight.as_ref() == Some(owner));
        if ours {
            inner.put(key, Some(owner.clone()), later(now, lease));
        }
        ours
    }

    /// The synchronous heart of [`ReplayStore::complete`].
    pub(crate) fn complete_now(&self, key: &ReplayKey, owner: &Owner, ttl: Duration, now: Instant) {
        let mut inner = self.lock();
        let settle = match inner.live(key, now) {
            Some(entry) => entry.in_flight.as_ref() == Some(owner),
            None => inner.make_room(self.capacity, self.policy, now),
        };
        if settle {
            inner.put(key, None, later(now, ttl));
        }
    }
}

/// `now + by`, or as far ahead as an `Instant` goes: a huge window never panics.
fn later(now: Instant, by: Duration) -> Instant {
    now.checked_add(by)
        .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(now)
}

impl ReplayStore for MemoryStore {
    fn claim(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        ready(Ok(self.claim_now(key, owner, lease, Instant::now())))
    }

    fn renew(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self.renew_now(key, owner, lease, Instant::now())))
    }

    fn complete(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.complete_now(key, owner, ttl, Instant::now());
        ready(Ok(()))
    }

    fn release(
        &self,
        key: &ReplayKey,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let mut inner = self.lock();
        if inner
            .entries
            .get(key)
            .is_some_and(|entry| entry.in_flight.as_ref() == Some(owner))
        {
            inner.remove(key);
        }
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> ReplayKey {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        ReplayKey::from_bytes(bytes)
    }

    const TTL: Duration = Duration::from_secs(60);

    const LEASE: Duration = Duration::from_secs(3);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn new_then_in_flight_then_done() {
        let store = MemoryStore::new(10);
        let (a, b) = (Owner::random(), Owner::random());
        let now = Instant::now();
        assert_eq!(store.claim_now(&key(1), &a, LEASE, now), Claim::Claimed);
        assert_eq!(store.claim_now(&key(1), &b, LEASE, now), Claim::InFlight);
        store.complete_now(&key(1), &a, TTL, now);
        assert_eq!(store.claim_now(&key(1), &b, LEASE, now), Claim::Done);
    }

    #[test]
    fn a_release_lets_the_retry_run_but_only_the_owner_may_release() {
        let store = MemoryStore::new(10);
        let (a, b) = (Owner::random(), Owner::random());
        let now = Instant::now();
        assert_eq!(store.claim_now(&key(1), &a, LEASE, now), Claim::Claimed);
        futures_block(store.release(&key(1), &b)).unwrap();
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
        futures_block(store.release(&key(1), &a)).unwrap();
        assert_eq!(store.claim_now(&key(1), &b, LEASE, now), Claim::Claimed);
    }

    #[test]
    fn an_unrenewed_lease_lapses_and_the_retry_is_claimed() {
        let store = MemoryStore::new(10);
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
        let store = MemoryStore::new(10);
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
        let store = MemoryStore::new(1);
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
        let store = MemoryStore::new(10);
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
        let store = MemoryStore::new(10);
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
        let store = MemoryStore::new(10);
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
        let store = MemoryStore::new(2);
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
    fn when_full_of_live_entries_new_ones_are_refused_or_the_oldest_evicted() {
        let (owner, other) = (Owner::random(), Owner::random());
        let now = Instant::now();
        let refusing = MemoryStore::new(2);
        refusing.claim_now(&key(1), &owner, TTL, now);
        refusing.claim_now(&key(2), &owner, TTL, now);
        assert_eq!(refusing.claim_now(&key(3), &owner, TTL, now), Claim::Full);

        let evicting = MemoryStore::new(2).with_full_policy(FullPolicy::EvictOldest);
        evicting.claim_now(&key(1), &owner, Duration::from_secs(30), now);
        evicting.claim_now(&key(2), &owner, TTL, now);
        assert_eq!(
            evicting.claim_now(&key(3), &owner, TTL, now),
            Claim::Claimed
        );
        assert_eq!(
            evicting.claim_now(&key(1), &other, TTL, now),
            Claim::Claimed,
            "the oldest was forgotten"
        );
        assert_eq!(evicting.len(), 2);
    }

    /// The store's futures are ready at once.
    fn futures_block<F: Future>(future: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => unreachable!("memory store futures are ready"),
        }
    }
}
