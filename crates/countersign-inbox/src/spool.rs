//! [`Spool`]: where an instance keeps verified deliveries while the inbox's database is down,
//! until its workers move them into the inbox.
//!
//! One file per delivery, named by its delivery id (a retry of a spooled delivery replaces
//! nothing): a line of JSON with what the inbox keeps of it, then the body's bytes. A file is
//! written to a temporary name, flushed to disk, renamed, and the directory flushed, before
//! the delivery is acknowledged: a crash leaves either the whole file or none.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::{Value, json};

use countersign_core::Provider;

use crate::delivery::{InboxDelivery, from_millis, millis};

/// The most deliveries a spool holds by default.
pub const DEFAULT_SPOOL_ENTRIES: usize = 10_000;
/// The most bytes a spool holds by default.
pub const DEFAULT_SPOOL_BYTES: u64 = 256 * 1024 * 1024;
/// Below how many entries a tenant may spool into the reserve (an eighth of the spool, kept
/// for tenants with only their first few spooled); fewer in a small spool.
const FIRST_DELIVERIES: usize = 16;

/// A bounded directory of deliveries waiting for the database, this instance's own (an
/// instance taken out of a fleet for good leaves its spool behind: drain it first). No tenant
/// takes more than an eighth of its entries or of its bytes outside a reserve, and the reserve
/// (an eighth of the spool) takes only the first few deliveries of each tenant: eight tenants
/// that fill their shares leave room for the others' first deliveries.
///
/// A delivery still in the spool after half the time its id is remembered (the inbox's retry
/// horizon, [`Inbox::with_retry_horizon`](crate::Inbox::with_retry_horizon), or its
/// signature's window and the margin if longer) is not run: it is set
/// aside as a dead letter marked [`MAYBE_HANDLED`](crate::MAYBE_HANDLED). Its commit may
/// have reached the database although this instance saw an error, another instance may have
/// handled it, and its id may have been forgotten since. Cheap to clone; clones share
/// everything.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    max_entries: usize,
    max_bytes: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The spooled deliveries, and those being written.
    entries: HashMap<String, Entry>,
    bytes: u64,
    /// Each tenant's deliveries and bytes.
    per_tenant: HashMap<Option<String>, (usize, u64)>,
}

struct Entry {
    tenant: Option<String>,
    size: u64,
    /// On disk (flushed and renamed): acknowledged.
    durable: bool,
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.inner.dir)
            .field("entries", &self.len())
            .finish()
    }
}

/// Why a delivery was not spooled.
#[derive(Debug)]
pub(super) enum Refused {
    /// The spool, or the tenant's share of it, is full.
    Full,
    /// The same delivery is being written now: the provider's retry comes back.
    Busy,
    /// The disk failed.
    Io(std::io::Error),
}

impl Spool {
    /// The spool in `dir` (made 0700 when absent), holding at most [`DEFAULT_SPOOL_ENTRIES`]
    /// deliveries and [`DEFAULT_SPOOL_BYTES`]; what a previous run left there is kept.
    ///
    /// # Errors
    /// When the directory cannot be made or read.
    pub fn open(dir: impl AsRef<Path>) -> std::io::Result<Self> {
        Self::with_limits(dir, DEFAULT_SPOOL_ENTRIES, DEFAULT_SPOOL_BYTES)
    }

    /// The spool in `dir`, holding at most `max_entries` deliveries and `max_bytes`.
    ///
    /// # Errors
    /// When the directory cannot be made or read.
    pub fn with_limits(
        dir: impl AsRef<Path>,
        max_entries: usize,
        max_bytes: u64,
    ) -> std::io::Result<Self> {
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let mut state = State::default();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A write that did not finish: never acknowledged.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            if name.ends_with(".bad") {
                continue;
            }
            match read(&entry.path()) {
                Ok((delivery, _)) => {
                    let size = entry.metadata()?.len();
                    state.add(delivery.id, delivery.tenant, size, true);
                }
                Err(error) => {
                    tracing::error!(target: "countersign", file = %entry.path().display(), %error, "a spooled delivery cannot be read; it stays where it is");
                }
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                max_entries: max_entries.max(1),
                max_bytes,
                state: Mutex::new(state),
            }),
        })
    }

    /// How many deliveries wait in the spool.
    #[must_use]
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    /// Whether none waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `delivery` on disk until it is moved into the inbox.
    pub(super) fn append(
        &self,
        delivery: &InboxDelivery,
        expires_at: SystemTime,
    ) -> Result<(), Refused> {
        let head = json!({
            "id": delivery.id,
            "provider": delivery.provider.as_str(),
            "tenant": delivery.tenant,
            "signed_headers": delivery.signed_headers,
            "received_at": millis(delivery.received_at),
            "expires_at": millis(expires_at),
        })
        .to_string();
        let size = (head.len() + 1 + delivery.body.len()) as u64;
        {
            // Reserved before it is written: a second copy of the delivery waits for the first.
            let mut state = self.state();
            if let Some(entry) = state.entries.get(&delivery.id) {
                return if entry.durable {
                    Ok(())
                } else {
                    Err(Refused::Busy)
                };
            }
            let (count, bytes) = state
                .per_tenant
                .get(&delivery.tenant)
                .copied()
                .unwrap_or((0, 0));
            if !self.has_room(&state, count, bytes, size) {
                return Err(Refused::Full);
            }
            state.add(delivery.id.clone(), delivery.tenant.clone(), size, false);
        }
        let path = self.inner.dir.join(&delivery.id);
        let nonce = countersign_core::random_hex(8).unwrap_or_default();
        let temporary = self.inner.dir.join(format!("{}.{nonce}.tmp", delivery.id));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temporary)?;
            file.write_all(head.as_bytes())?;
            file.write_all(b"\n")?;
            file.write_all(&delivery.body)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            std::fs::File::open(&self.inner.dir)?.sync_all()
        })();
        let mut state = self.state();
        match written {
            Ok(()) => {
                if let Some(entry) = state.entries.get_mut(&delivery.id) {
                    entry.durable = true;
                }
                Ok(())
            }
            Err(error) => {
                let _ = std::fs::remove_file(&temporary);
                state.remove(&delivery.id);
                Err(Refused::Io(error))
            }
        }
    }

    /// How many entries one tenant may hold: an eighth of those outside the reserve.
    pub(super) fn tenant_share(&self) -> u64 {
        let (general, _) = self.areas();
        (general / 8).max(1) as u64
    }

    /// The entries and bytes outside the reserve, then the reserve's: an eighth of each is
    /// kept for tenants that hold only their first few ([`FIRST_DELIVERIES`]).
    fn areas(&self) -> (usize, u64) {
        let reserve_entries = self.inner.max_entries / 8;
        let reserve_bytes = self.inner.max_bytes / 8;
        (
            self.inner.max_entries - reserve_entries,
            self.inner.max_bytes - reserve_bytes,
        )
    }

    /// Whether a tenant holding `count` entries and `bytes` may add one of `size` bytes: within
    /// its share (an eighth of the spool outside the reserve), and in that part of the spool
    /// or, while it holds fewer than [`FIRST_DELIVERIES`], in the reserve. So however many
    /// tenants fill their shares, one with nothing spooled can still spool its first ones.
    fn has_room(&self, state: &State, count: usize, bytes: u64, size: u64) -> bool {
        let (general_entries, general_bytes) = self.areas();
        let share_entries = (general_entries / 8).max(1);
        let share_bytes = general_bytes / 8;
        let within_share = count < share_entries && bytes + size <= share_bytes;
        let in_general =
            state.entries.len() < general_entries && state.bytes + size <= general_bytes;
        // Each tenant's first few: at most an eighth of the reserve, so that eight at least
        // fit in it.
        let first = FIRST_DELIVERIES
            .min((self.inner.max_entries / 8) / 8)
            .max(1);
        let reserve_bytes = self.inner.max_bytes - general_bytes;
        let in_reserve = count < first
            && bytes + size <= reserve_bytes / 8
            && state.entries.len() < self.inner.max_entries
            && state.bytes + size <= self.inner.max_bytes;
        within_share && (in_general || in_reserve)
    }

    /// The spooled deliveries but those of the tenants in `skip`, each with when it is
    /// forgotten once handled: at most `limit`.
    /// One that is not a spooled delivery is set aside (`.bad`) for an operator.
    pub(super) fn peek(
        &self,
        limit: usize,
        skip: &std::collections::HashSet<Option<String>>,
    ) -> Vec<(InboxDelivery, SystemTime)> {
        let ids: Vec<String> = self
            .state()
            .entries
            .iter()
            .filter(|(_, entry)| entry.durable && !skip.contains(&entry.tenant))
            .take(limit)
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| match read(&self.inner.dir.join(&id)) {
                Ok(delivery) => Some(delivery),
                Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::error!(target: "countersign", delivery = %id, %error, "a spooled delivery is unreadable: set aside as .bad");
                    let from = self.inner.dir.join(&id);
                    let _ = std::fs::rename(&from, self.inner.dir.join(format!("{id}.bad")));
                    self.state().remove(&id);
                    None
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    self.state().remove(&id);
                    None
                }
                Err(error) => {
                    tracing::warn!(target: "countersign", delivery = %id, %error, "a spooled delivery cannot be read now");
                    None
                }
            })
            .collect()
    }

    /// Forgets `id`: it is in the inbox now. The removal is flushed to disk, so that a crash
    /// does not bring the file back (drained again, it would be a duplicate of its row; set
    /// aside, if that row was forgotten since). A file that cannot be removed stays, and is
    /// drained again as a duplicate.
    pub(super) fn remove(&self, id: &str) {
        if let Err(error) = std::fs::remove_file(self.inner.dir.join(id))
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(target: "countersign", delivery = %id, %error, "could not remove a spooled delivery");
            return;
        }
        self.state().remove(id);
        if let Err(error) = std::fs::File::open(&self.inner.dir).and_then(|dir| dir.sync_all()) {
            tracing::warn!(target: "countersign", delivery = %id, %error, "could not flush the spool's directory after a removal");
        }
    }
}

impl State {
    /// Counts a delivery once, however often it is added.
    fn add(&mut self, id: String, tenant: Option<String>, size: u64, durable: bool) {
        if self.entries.contains_key(&id) {
            return;
        }
        let share = self.per_tenant.entry(tenant.clone()).or_default();
        share.0 += 1;
        share.1 += size;
        self.bytes += size;
        self.entries.insert(
            id,
            Entry {
                tenant,
                size,
                durable,
            },
        );
    }

    fn remove(&mut self, id: &str) {
        if let Some(entry) = self.entries.remove(id) {
            self.bytes = self.bytes.saturating_sub(entry.size);
            if let Some(share) = self.per_tenant.get_mut(&entry.tenant) {
                share.0 = share.0.saturating_sub(1);
                share.1 = share.1.saturating_sub(entry.size);
                if share.0 == 0 {
                    self.per_tenant.remove(&entry.tenant);
                }
            }
        }
    }
}

/// A spooled delivery and when it is forgotten once handled.
fn read(path: &Path) -> std::io::Result<(InboxDelivery, SystemTime)> {
    let bytes = std::fs::read(path)?;
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a spooled delivery");
    let newline = bytes.iter().position(|&b| b == b'\n').ok_or_else(invalid)?;
    let head: Value = serde_json::from_slice(&bytes[..newline]).map_err(|_| invalid())?;
    let delivery = InboxDelivery {
        id: head["id"].as_str().ok_or_else(invalid)?.to_owned(),
        provider: Provider::from_name(head["provider"].as_str().unwrap_or_default())
            .ok_or_else(invalid)?,
        tenant: head["tenant"].as_str().map(str::to_owned),
        body: Bytes::copy_from_slice(&bytes[newline + 1..]),
        signed_headers: serde_json::from_value(head["signed_headers"].clone()).unwrap_or_default(),
        received_at: from_millis(head["received_at"].as_i64().ok_or_else(invalid)?),
        attempt: 0,
    };
    let expires_at = from_millis(head["expires_at"].as_i64().ok_or_else(invalid)?);
    Ok((delivery, expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(tenant: &str, n: usize) -> InboxDelivery {
        InboxDelivery {
            id: format!("{tenant}-{n}"),
            provider: Provider::Contentstack,
            tenant: Some(tenant.to_owned()),
            body: Bytes::from_static(b"{}"),
            signed_headers: Vec::new(),
            received_at: SystemTime::now(),
            attempt: 0,
        }
    }

    /// Spools `tenant`'s deliveries until refused: how many it took.
    fn fill(spool: &Spool, tenant: &str) -> usize {
        (0..1_000)
            .take_while(|&n| {
                spool
                    .append(&delivery(tenant, n), SystemTime::now())
                    .is_ok()
            })
            .count()
    }

    #[test]
    fn eight_tenants_that_fill_their_shares_leave_room_for_the_others_first_deliveries() {
        let dir =
            std::env::temp_dir().join(format!("countersign-spool-share-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::with_limits(&dir, 160, 1 << 20).unwrap();
        let shares: Vec<usize> = (0..8).map(|t| fill(&spool, &format!("big{t}"))).collect();
        assert_eq!(
            shares, [17; 8],
            "an eighth of the spool outside the reserve each"
        );
        // Any number of other tenants, each with nothing spooled, spool their first ones while
        // the reserve lasts; none of the eight gets more.
        for t in 0..8 {
            assert!(
                fill(&spool, &format!("small{t}")) >= 2,
                "tenant {t} spooled its first"
            );
        }
        let more = delivery("big0", 999);
        assert!(matches!(
            spool.append(&more, SystemTime::now()),
            Err(Refused::Full)
        ));
        assert!(spool.len() <= 160);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
