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

use super::{InboxDelivery, Provider, from_millis, millis};

/// The most deliveries a spool holds by default.
pub const DEFAULT_SPOOL_ENTRIES: usize = 10_000;
/// The most bytes a spool holds by default.
pub const DEFAULT_SPOOL_BYTES: u64 = 256 * 1024 * 1024;

/// A bounded directory of deliveries waiting for the database. No tenant takes more than an
/// eighth of it. Cheap to clone; clones share everything.
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
    /// The spooled deliveries: their tenant and size.
    entries: HashMap<String, (Option<String>, u64)>,
    bytes: u64,
    per_tenant: HashMap<Option<String>, usize>,
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
            if let Ok(delivery) = read(&entry.path()) {
                let size = entry.metadata()?.len();
                state.add(delivery.0.id, delivery.0.tenant, size);
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
            let state = self.state();
            if state.entries.contains_key(&delivery.id) {
                return Ok(());
            }
            let share = (self.inner.max_entries / 8).max(1);
            let tenant_count = state.per_tenant.get(&delivery.tenant).copied().unwrap_or(0);
            if state.entries.len() >= self.inner.max_entries
                || state.bytes + size > self.inner.max_bytes
                || tenant_count >= share
            {
                return Err(Refused::Full);
            }
        }
        let path = self.inner.dir.join(&delivery.id);
        let temporary = self.inner.dir.join(format!("{}.tmp", delivery.id));
        let written = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(head.as_bytes())?;
            file.write_all(b"\n")?;
            file.write_all(&delivery.body)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            std::fs::File::open(&self.inner.dir)?.sync_all()
        })();
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(Refused::Io(error));
        }
        self.state()
            .add(delivery.id.clone(), delivery.tenant.clone(), size);
        Ok(())
    }

    /// The spooled deliveries, each with when it is forgotten once handled: at most `limit`.
    pub(super) fn peek(&self, limit: usize) -> Vec<(InboxDelivery, SystemTime)> {
        let ids: Vec<String> = self.state().entries.keys().take(limit).cloned().collect();
        ids.into_iter()
            .filter_map(|id| match read(&self.inner.dir.join(&id)) {
                Ok(delivery) => Some(delivery),
                Err(error) => {
                    tracing::warn!(target: "countersign", delivery = %id, %error, "an unreadable spooled delivery is dropped");
                    self.remove(&id);
                    None
                }
            })
            .collect()
    }

    /// Forgets `id`: it is in the inbox now.
    pub(super) fn remove(&self, id: &str) {
        if let Err(error) = std::fs::remove_file(self.inner.dir.join(id))
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(target: "countersign", delivery = %id, %error, "could not remove a spooled delivery");
            return;
        }
        self.state().remove(id);
    }
}

impl State {
    fn add(&mut self, id: String, tenant: Option<String>, size: u64) {
        *self.per_tenant.entry(tenant.clone()).or_default() += 1;
        self.bytes += size;
        self.entries.insert(id, (tenant, size));
    }

    fn remove(&mut self, id: &str) {
        if let Some((tenant, size)) = self.entries.remove(id) {
            self.bytes = self.bytes.saturating_sub(size);
            if let Some(count) = self.per_tenant.get_mut(&tenant) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.per_tenant.remove(&tenant);
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
