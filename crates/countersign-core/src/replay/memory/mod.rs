//! The in-memory replay store: one process, bounded, shared fairly among tenants.

use std::collections::{BTreeSet, HashMap};
use std::future::{Future, ready};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Claim, Owner, ReplayKey, ReplayStore, StoreError};

/// The most one entry of a [`MemoryStore`] costs, in bytes, counting the store's indexes and
/// its hash table's spare room just after it grows (measured with a counting allocator by the
/// `memory_store_entries_cost_at_most_bytes_per_entry` test).
/// [`MemoryStore::with_capacity_bytes`] divides by it.
pub const BYTES_PER_ENTRY: usize = 256;

/// The default room of [`MemoryStore::default`]: 64 MiB, which is 262,144 entries. For
/// Contentstack's default window (a 30-minute tolerance, 60 s of skew and the replay guard's
/// 60 s margin: 32 minutes), that holds **136 deliveries a second** from all tenants together,
/// and 17 a second from any one tenant; for Contentful's (a 30 s TTL, 60 s of skew, 60 s of
/// margin: 150 s), 1,747 and 218.
pub const DEFAULT_CAPACITY_BYTES: usize = 64 << 20;

/// No tenant holds more than this fraction of a store by default: an eighth.
const TENANT_SHARE_DIVISOR: usize = 8;

/// What a full [`MemoryStore`] does when a new delivery comes and every entry is still live.
///
/// - [`RefuseNew`](FullPolicy::RefuseNew) (the default) answers 503, so the sender retries
///   later: no replay is ever let through, at the cost of refusing deliveries while the store
///   is full. Only verified requests take entries, but any tenant can produce those (and
///   any user of a Contentful app, frontend-signed ones): hence the share per tenant.
/// - [`EvictOldest`](FullPolicy::EvictOldest) forgets the handled delivery closest to expiry:
///   every new delivery is handled, but a replay of an evicted delivery within its signature's
///   window would be handled again. A claim in flight is never evicted (that would let two
///   handlers run one delivery at once): when every entry is in flight, a new one is refused.
///   Nor does it take room from a smaller tenant: the oldest handled delivery goes only for
///   its own tenant or for one that holds fewer entries than its tenant. Choose it only when
///   availability matters more than exactly-once.
///
/// Either way, no tenant takes more than its share ([`MemoryStore::with_tenant_share`]): a
/// tenant at its share is refused ([`Claim::TenantFull`]) while the others are served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FullPolicy {
    /// Refuse new deliveries with 503 until entries expire.
    #[default]
    RefuseNew,
    /// Forget the handled delivery closest to expiry; never a claim in flight.
    EvictOldest,
}

/// One remembered delivery: 24 bytes beside its 32-byte digest.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The claim's owner, hashed ([`owner_tag`]), while in flight; [`DONE`] once handled.
    owner: u64,
    /// The end of the lease while in flight, of the window once done: milliseconds since the
    /// store's epoch.
    expires: u64,
    /// The tenant's partition ([`ReplayKey::partition`]).
    partition: u64,
}

/// The owner tag of a handled delivery.
const DONE: u64 = 0;

type Digest = [u8; 32];

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Digest, Entry>,
    /// Handled deliveries by expiry: the oldest is evicted first, the expired purged.
    done: BTreeSet<(u64, Digest)>,
    /// Claims in flight by the end of their lease.
    leases: BTreeSet<(u64, Digest)>,
    /// Live entries per tenant partition.
    per_partition: HashMap<u64, u32>,
}

impl Inner {
    fn index(&mut self, entry: Entry) -> &mut BTreeSet<(u64, Digest)> {
        if entry.owner == DONE {
            &mut self.done
        } else {
            &mut self.leases
        }
    }

    fn remove(&mut self, digest: &Digest) {
        if let Some(entry) = self.entries.remove(digest) {
            self.index(entry).remove(&(entry.expires, *digest));
            if let Some(count) = self.per_partition.get_mut(&entry.partition) {
                *count -= 1;
                if *count == 0 {
                    self.per_partition.remove(&entry.partition);
                }
            }
        }
    }

    /// The entry of `digest` unless it has expired (an expired one is dropped).
    fn live(&mut self, digest: &Digest, now: u64) -> Option<Entry> {
        match self.entries.get(digest) {
            Some(entry) if entry.expires <= now => {
                self.remove(digest);
                None
            }
            entry => entry.copied(),
        }
    }

    /// Puts `entry` under `digest`, replacing what it had.
    fn put(&mut self, digest: &Digest, entry: Entry) {
        self.remove(digest);
        self.index(entry).insert((entry.expires, *digest));
        *self.per_partition.entry(entry.partition).or_default() += 1;
        self.entries.insert(*digest, entry);
    }

    fn purge_expired(&mut self, now: u64) {
        for index in [true, false] {
            loop {
                let set = if index { &self.done } else { &self.leases };
                match set.first() {
                    Some(&(expires, digest)) if expires <= now => self.remove(&digest),
                    _ => break,
                }
            }
        }
    }

    fn count(&self, partition: u64) -> usize {
        self.per_partition
            .get(&partition)
            .map_or(0, |&n| n as usize)
    }
}

/// Remembers deliveries in this process's memory, in a bounded room that tenants share.
///
/// - The room is [`DEFAULT_CAPACITY_BYTES`] by default ([`MemoryStore::default`]), or a
///   number of entries ([`new`](Self::new)) or of bytes
///   ([`with_capacity_bytes`](Self::with_capacity_bytes)); an entry costs at most
///   [`BYTES_PER_ENTRY`].
/// - No tenant ([`ReplayKey::partition`]: one provider, app and stack or space) holds more
///   than its share, by default an eighth of the room: one tenant's flood is refused while
///   the others are served.
/// - Expired entries go first; see [`FullPolicy`] for what happens when every entry is live.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    epoch: Instant,
    capacity: usize,
    tenant_share: usize,
    policy: FullPolicy,
}

impl Default for MemoryStore {
    /// A store of [`DEFAULT_CAPACITY_BYTES`].
    fn default() -> Self {
        Self::with_capacity_bytes(DEFAULT_CAPACITY_BYTES)
    }
}

impl MemoryStore {
    /// A store of at most `capacity` entries (at least 1), refusing new deliveries when full;
    /// no tenant holds more than an eighth of it (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // A second back, so that a time taken just before the store was made is after it.
        let now = Instant::now();
        Self {
            inner: Mutex::new(Inner::default()),
            epoch: now.checked_sub(Duration::from_secs(1)).unwrap_or(now),
            capacity,
            tenant_share: (capacity / TENANT_SHARE_DIVISOR).max(1),
            policy: FullPolicy::default(),
        }
    }

    /// A store that uses at most about `bytes` of memory: `bytes /`
    /// [`BYTES_PER_ENTRY`] entries.
    #[must_use]
    pub fn with_capacity_bytes(bytes: usize) -> Self {
        Self::new(bytes / BYTES_PER_ENTRY)
    }

    /// What to do when full of live entries.
    #[must_use]
    pub fn with_full_policy(mut self, policy: FullPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How many entries one tenant may hold at most (at least 1, at most the capacity); an
    /// eighth of the capacity by default. With few tenants, each with bursts, raise it; with
    /// many strangers, lower it: N tenants of one hand hold N shares.
    #[must_use]
    pub fn with_tenant_share(mut self, entries: usize) -> Self {
        self.tenant_share = entries.clamp(1, self.capacity);
        self
    }

    /// How many entries it may hold.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many entries one tenant may hold.
    #[must_use]
    pub fn tenant_share(&self) -> usize {
        self.tenant_share
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

    /// `at` in milliseconds since the store's epoch, and `by` after it, saturating: a huge
    /// window never panics.
    fn millis(&self, at: Instant, by: Duration) -> (u64, u64) {
        let now =
            u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        (now, now.saturating_add(by))
    }

    /// Whether one more entry of `partition` fits. Expired entries go first. Then a full
    /// room is [`Claim::Full`] and a tenant at its share [`Claim::TenantFull`], unless `policy`
    /// evicts the oldest handled delivery, which it does only when that delivery is the
    /// tenant's own, or its tenant holds more entries than this one (room moves from larger
    /// tenants to smaller ones, never back), and never for a tenant at its share but from
    /// itself.
    fn make_room(&self, inner: &mut Inner, partition: u64, now: u64) -> Result<(), Claim> {
        let tenant_full = |inner: &Inner| inner.count(partition) >= self.tenant_share;
        if tenant_full(inner) || inner.entries.len() >= self.capacity {
            inner.purge_expired(now);
        }
        let room_full = inner.entries.len() >= self.capacity;
        if !room_full && !tenant_full(inner) {
            return Ok(());
        }
        let evictable = match (self.policy, inner.done.first()) {
            (FullPolicy::EvictOldest, Some(&(_, oldest))) => {
                let holder = inner.entries.get(&oldest).map(|entry| entry.partition);
                let own = holder == Some(partition);
                let larger = holder.is_some_and(|holder| {
                    inner.count(holder) > inner.count(partition).saturating_add(1)
                });
                (own || (larger && !tenant_full(inner))).then_some(oldest)
            }
            _ => None,
        };
        match evictable {
            Some(oldest) => {
                inner.remove(&oldest);
                Ok(())
            }
            None if room_full => Err(Claim::Full),
            None => Err(Claim::TenantFull),
        }
    }

    /// The synchronous heart of [`ReplayStore::claim`].
    pub(crate) fn claim_now(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
        at: Instant,
    ) -> Claim {
        let (now, until) = self.millis(at, lease);
        let tag = owner_tag(owner);
        let mut inner = self.lock();
        let digest = key.as_bytes();
        match inner.live(digest, now).map(|entry| entry.owner) {
            Some(DONE) => return Claim::Done,
            Some(holder) if holder != tag => return Claim::InFlight,
            Some(_) => {}
            None => {
                if let Err(refused) = self.make_room(&mut inner, key.partition(), now) {
                    return refused;
                }
            }
        }
        inner.put(
            digest,
            Entry {
                owner: tag,
                expires: until,
                partition: key.partition(),
            },
        );
        Claim::Claimed
    }

    /// The synchronous heart of [`ReplayStore::renew`].
    pub(crate) fn renew_now(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
        at: Instant,
    ) -> bool {
        let (now, until) = self.millis(at, lease);
        let tag = owner_tag(owner);
        let mut inner = self.lock();
        match inner.live(key.as_bytes(), now) {
            Some(entry) if entry.owner == tag => {
                inner.put(
                    key.as_bytes(),
                    Entry {
                        expires: until,
                        ..entry
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// The synchronous heart of [`ReplayStore::complete`].
    pub(crate) fn complete_now(&self, key: &ReplayKey, owner: &Owner, ttl: Duration, at: Instant) {
        let (now, until) = self.millis(at, ttl);
        let mut inner = self.lock();
        let settle = match inner.live(key.as_bytes(), now) {
            Some(entry) => entry.owner == owner_tag(owner),
            None => self.make_room(&mut inner, key.partition(), now).is_ok(),
        };
        if settle {
            inner.put(
                key.as_bytes(),
                Entry {
                    owner: DONE,
                    expires: until,
                    partition: key.partition(),
                },
            );
        }
    }

    /// The synchronous heart of [`ReplayStore::release`].
    pub(crate) fn release_now(&self, key: &ReplayKey, owner: &Owner) {
        let mut inner = self.lock();
        if inner
            .entries
            .get(key.as_bytes())
            .is_some_and(|entry| entry.owner == owner_tag(owner))
        {
            inner.remove(key.as_bytes());
        }
    }
}

/// An owner as 8 bytes: owners are random per request, so a collision is a 2^-64 chance.
/// Never [`DONE`].
fn owner_tag(owner: &Owner) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    owner.as_str().hash(&mut hasher);
    hasher.finish().max(1)
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
        self.release_now(key, owner);
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests;
