//! The app's OAuth tokens per installation, in the app's database: a [`TokenStore`] the fleet
//! shares. Each installation's tokens are one AES-256-GCM ciphertext sealed for that
//! installation, so neither the database file nor a `pg_dump` shows a token, and a sealed row
//! copied to another installation does not open there. A refresh's compare-and-set compares a
//! keyed fingerprint of the refresh token, and the refresh lock is one conditional upsert.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use countersign::contentstack::oauth::{AccessToken, RefreshToken};
use countersign::contentstack::oauth::{
    Installation, StoreError, StoreErrorKind, StoredTokens, TokenStore,
};
use example_support::postgres::bounded;
use example_support::sealed::SealingKeys;
use serde_json::{Value, json};

use super::{Backend, Store};

/// The tokens table (SQLite): one row per installation, with its sealed tokens, the
/// fingerprint of its refresh token, its stack and when it was authorized (for the uninstall
/// event), and its refresh lock.
pub(super) const SQLITE_MIGRATION: &str = "CREATE TABLE IF NOT EXISTS oauth_tokens (
         installation TEXT PRIMARY KEY, stack_api_key TEXT, sealed BLOB, refresh_fp TEXT,
         authorized_at INTEGER NOT NULL DEFAULT 0, lock_owner TEXT,
         lock_until INTEGER NOT NULL DEFAULT 0);
     CREATE INDEX IF NOT EXISTS oauth_tokens_by_stack ON oauth_tokens (stack_api_key);";

/// The tokens table in PostgreSQL's dialect.
pub(super) const POSTGRES_MIGRATION: &str = "CREATE TABLE IF NOT EXISTS oauth_tokens (
         installation TEXT PRIMARY KEY, stack_api_key TEXT, sealed BYTEA, refresh_fp TEXT,
         authorized_at BIGINT NOT NULL DEFAULT 0, lock_owner TEXT,
         lock_until BIGINT NOT NULL DEFAULT 0);
     CREATE INDEX IF NOT EXISTS oauth_tokens_by_stack ON oauth_tokens (stack_api_key);";

/// Forgets a stack's tokens authorized before its uninstall event (`?2`, milliseconds), in
/// the delivery's transaction: an uninstall retried after the app was installed again leaves
/// the new tokens alone. Both times are Contentstack's: the uninstall's `triggered_at`, and the
/// token endpoint's `Date` when the code was exchanged (`StoredTokens::authorized_at`), never
/// this host's clock.
pub(super) const FORGET_STACK: &str = "UPDATE oauth_tokens SET sealed = NULL, refresh_fp = NULL
     WHERE stack_api_key = ?1 AND authorized_at < ?2";

/// Each statement is written once, with SQLite's `?N` parameters; PostgreSQL's are `$N`.
const LOAD: &str = "SELECT sealed FROM oauth_tokens WHERE installation = ?1";
const SAVE: &str = "INSERT INTO oauth_tokens (installation, stack_api_key, sealed, refresh_fp, authorized_at)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (installation) DO UPDATE SET sealed = excluded.sealed, refresh_fp = excluded.refresh_fp,
         authorized_at = excluded.authorized_at";
const FORGET: &str =
    "UPDATE oauth_tokens SET sealed = NULL, refresh_fp = NULL WHERE installation = ?1";
const REPLACE: &str = "UPDATE oauth_tokens SET sealed = ?2, refresh_fp = ?3
     WHERE installation = ?1 AND refresh_fp = ?4";
const LOCK: &str = "INSERT INTO oauth_tokens (installation, stack_api_key, lock_owner, lock_until)
     VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (installation) DO UPDATE SET lock_owner = excluded.lock_owner, lock_until = excluded.lock_until
     WHERE oauth_tokens.lock_owner IS NULL OR oauth_tokens.lock_owner = excluded.lock_owner
        OR oauth_tokens.lock_until <= ?5";
/// A row opened with an old key, sealed again with the first, unless it changed meanwhile.
const RESEAL: &str = "UPDATE oauth_tokens SET sealed = ?2, refresh_fp = ?3
     WHERE installation = ?1 AND sealed = ?4";
const UNLOCK: &str = "UPDATE oauth_tokens SET lock_owner = NULL, lock_until = 0
     WHERE installation = ?1 AND lock_owner = ?2";

/// A statement's parameter, typed for both databases (a PostgreSQL `NULL` has a type).
#[derive(Debug, Clone)]
enum Arg {
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Int(i64),
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Self::Text(text) => text.to_sql(),
            Self::Bytes(bytes) => bytes.to_sql(),
            Self::Int(int) => int.to_sql(),
        }
    }
}

impl Arg {
    fn postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Self::Text(text) => text,
            Self::Bytes(bytes) => bytes,
            Self::Int(int) => int,
        }
    }
}

impl Store {
    /// Runs `sql` with `args`: the number of rows it changed.
    async fn change(&self, sql: &'static str, args: Vec<Arg>) -> Result<u64, super::StoreError> {
        match &self.backend {
            Backend::Sqlite(connection) => {
                Self::sqlite(connection, move |db| {
                    db.execute(sql, rusqlite::params_from_iter(args.iter()))
                        .map(|rows| rows as u64)
                })
                .await
            }
            Backend::Postgres(pg) => {
                bounded(async {
                    let params: Vec<_> = args.iter().map(Arg::postgres).collect();
                    Ok(pg
                        .client()
                        .await?
                        .execute(&sql.replace('?', "$"), &params)
                        .await?)
                })
                .await
            }
        }
    }
}

/// The app's tokens in its [`Store`], sealed with its key. Cheap to clone.
#[derive(Clone)]
pub(crate) struct SealedTokens {
    store: Store,
    key: Arc<SealingKeys>,
}

impl SealedTokens {
    pub(crate) fn new(store: Store, key: Arc<SealingKeys>) -> Self {
        Self { store, key }
    }

    /// What the installation's tokens are sealed for, and its row's key: its organization and
    /// stack, as a JSON array (no two installations share one).
    fn row_key(installation: &Installation) -> String {
        json!([installation.organization_uid, installation.stack_api_key]).to_string()
    }

    fn seal(&self, row: &str, tokens: &StoredTokens) -> Result<Vec<u8>, StoreError> {
        let plain = json!({
            "access_token": tokens.access_token.expose(),
            "refresh_token": tokens.refresh_token.as_ref().map(RefreshToken::expose),
            "expires_at_ms": millis(tokens.expires_at),
            "lifetime_ms": u64::try_from(tokens.lifetime.as_millis()).unwrap_or(u64::MAX),
            "region": tokens.region,
            "authorized_at_ms": millis(tokens.authorized_at),
        })
        .to_string();
        self.key
            .seal(plain.as_bytes(), row.as_bytes())
            .map_err(|e| StoreError::new(StoreErrorKind::Unavailable, e))
    }

    /// The tokens of a row, and whether the first key sealed them; `None` when no key opens
    /// them (sealed with a key no longer configured, or copied from another installation's
    /// row): the installation authorizes again, and its next authorization replaces the row.
    fn open(&self, row: &str, sealed: &[u8]) -> Option<(StoredTokens, bool)> {
        let opened = self.key.open(sealed, row.as_bytes()).map_err(|_| {
            tracing::error!(installation = %row, "an installation's stored tokens open with no key of OAUTH_TOKEN_KEY: it must authorize the app again (keep an old key after the new one to rotate)");
        });
        let (plain, current) = opened.ok()?;
        let tokens = serde_json::from_slice::<Value>(&plain)
            .ok()
            .and_then(|value| tokens_of(&value));
        if tokens.is_none() {
            tracing::error!(installation = %row, "an installation's stored tokens are not a token set: it must authorize the app again");
        }
        Some((tokens?, current))
    }

    fn fingerprint(&self, tokens: Option<&StoredTokens>) -> Option<String> {
        tokens
            .and_then(|tokens| tokens.refresh_token.as_ref())
            .map(|token| self.key.fingerprint(token.expose()))
    }

    fn row_args(
        &self,
        installation: &Installation,
        tokens: Option<&StoredTokens>,
    ) -> Result<(String, Arg, Arg), StoreError> {
        let row = Self::row_key(installation);
        let sealed = tokens.map(|tokens| self.seal(&row, tokens)).transpose()?;
        let fingerprint = self.fingerprint(tokens);
        Ok((row, Arg::Bytes(sealed), Arg::Text(fingerprint)))
    }
}

/// The token set of an opened row.
fn tokens_of(value: &Value) -> Option<StoredTokens> {
    let text = |name: &str| value[name].as_str().map(str::to_owned);
    let number = |name: &str| value[name].as_u64();
    Some(StoredTokens {
        access_token: AccessToken::new(text("access_token")?),
        refresh_token: text("refresh_token").map(RefreshToken::new),
        expires_at: UNIX_EPOCH.checked_add(Duration::from_millis(number("expires_at_ms")?))?,
        lifetime: Duration::from_millis(number("lifetime_ms")?),
        region: text("region")?,
        // Rows sealed before it was kept: the epoch (any uninstall is later).
        authorized_at: UNIX_EPOCH + Duration::from_millis(number("authorized_at_ms").unwrap_or(0)),
    })
}

pub(super) fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}

/// The database failed: unavailable, so that the caller answers 503.
fn unavailable(error: &super::StoreError) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, error.to_string())
}

impl TokenStore for SealedTokens {
    async fn load(&self, installation: &Installation) -> Result<Option<StoredTokens>, StoreError> {
        let row = Self::row_key(installation);
        let Some(sealed) = self
            .store
            .column::<Option<Vec<u8>>>(LOAD, row.clone())
            .await
            .map_err(|e| unavailable(&e))?
            .flatten()
        else {
            return Ok(None);
        };
        let Some((tokens, current)) = self.open(&row, &sealed) else {
            return Ok(None);
        };
        if !current {
            // Sealed with an old key: sealed again with the new one, unless it changed.
            let (_, resealed, fingerprint) = self.row_args(installation, Some(&tokens))?;
            let args = vec![
                Arg::Text(Some(row)),
                resealed,
                fingerprint,
                Arg::Bytes(Some(sealed)),
            ];
            if let Err(error) = self.store.change(RESEAL, args).await {
                tracing::warn!(%error, "could not seal an installation's tokens again with the new key; tried at its next read");
            }
        }
        Ok(Some(tokens))
    }

    async fn save(
        &self,
        installation: &Installation,
        tokens: &StoredTokens,
    ) -> Result<(), StoreError> {
        let (row, sealed, fingerprint) = self.row_args(installation, Some(tokens))?;
        let stack = Arg::Text(installation.stack_api_key.clone());
        self.store
            .change(
                SAVE,
                vec![
                    Arg::Text(Some(row)),
                    stack,
                    sealed,
                    fingerprint,
                    Arg::Int(millis(tokens.authorized_at)),
                ],
            )
            .await
            .map(drop)
            .map_err(|e| unavailable(&e))
    }

    async fn forget(&self, installation: &Installation) -> Result<(), StoreError> {
        let row = Self::row_key(installation);
        self.store
            .change(FORGET, vec![Arg::Text(Some(row))])
            .await
            .map(drop)
            .map_err(|e| unavailable(&e))
    }

    async fn replace(
        &self,
        installation: &Installation,
        previous: &RefreshToken,
        tokens: Option<&StoredTokens>,
    ) -> Result<bool, StoreError> {
        let (row, sealed, fingerprint) = self.row_args(installation, tokens)?;
        // The row's fingerprint is under the key that sealed it: the new one, or an old one
        // until the row is read again.
        for previous in self.key.fingerprints(previous.expose()) {
            let args = vec![
                Arg::Text(Some(row.clone())),
                sealed.clone(),
                fingerprint.clone(),
                Arg::Text(Some(previous)),
            ];
            let changed = self
                .store
                .change(REPLACE, args)
                .await
                .map_err(|e| unavailable(&e))?;
            if changed == 1 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn lock(
        &self,
        installation: &Installation,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = SystemTime::now();
        let until = millis(now.checked_add(lease).unwrap_or(now));
        let args = vec![
            Arg::Text(Some(Self::row_key(installation))),
            Arg::Text(installation.stack_api_key.clone()),
            Arg::Text(Some(owner.to_owned())),
            Arg::Int(until),
            Arg::Int(millis(now)),
        ];
        let changed = self
            .store
            .change(LOCK, args)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(changed == 1)
    }

    async fn unlock(&self, installation: &Installation, owner: &str) -> Result<(), StoreError> {
        let args = vec![
            Arg::Text(Some(Self::row_key(installation))),
            Arg::Text(Some(owner.to_owned())),
        ];
        self.store
            .change(UNLOCK, args)
            .await
            .map(drop)
            .map_err(|e| unavailable(&e))
    }
}

#[cfg(test)]
mod tests;
