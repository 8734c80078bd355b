//! The Redis replay store: every instance behind a load balancer agrees on what it has seen.

use std::future::Future;
use std::time::Duration;

use countersign_core::{ConfigError, ConfigErrorKind};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Claim, Owner, ReplayKey, ReplayStore, StoreError};

/// What the replay guard does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnavailablePolicy {
    /// Answer 503 (the default): no replay can slip through; the sender retries later.
    #[default]
    FailClosed,
    /// Pass requests on unprotected, with a warning in the log: deliveries keep flowing, but
    /// replays are not caught while Redis is down.
    FailOpen,
}

/// Marks a claim done if, and only if, it is still the caller's.
const COMPLETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], 'done', 'KEEPTTL')
  return 1
end
return 0";

/// Forgets a claim if, and only if, it is still the caller's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Remembers deliveries in Redis, through a reconnecting connection manager. Claims are
/// `SET key inflight:<owner> NX PX <ttl>`; completing and releasing are compare-and-set
/// scripts, so that one instance never completes or releases another's claim.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    policy: UnavailablePolicy,
    complete: redis::Script,
    release: redis::Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store at `url` (`redis://host:port/db`, `rediss://` for TLS), connecting lazily, with
    /// one-second bounds on connecting and answering. Call it within a Tokio runtime.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSetting`] when `url` is not a Redis URL.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        Self::with_timeout(url, Duration::from_secs(1))
    }

    /// As [`new`](Self::new), with `timeout` bounding each connection attempt and each answer.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSetting`] when `url` is not a Redis URL.
    pub fn with_timeout(url: &str, timeout: Duration) -> Result<Self, ConfigError> {
        let invalid = |e: redis::RedisError| {
            ConfigError::new(
                ConfigErrorKind::InvalidSetting,
                format!("cannot use the Redis URL: {}", e.kind_str()),
            )
        };
        let client = redis::Client::open(url).map_err(invalid)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(invalid)?;
        Ok(Self {
            connection,
            prefix: "countersign:replay:".to_owned(),
            policy: UnavailablePolicy::default(),
            complete: redis::Script::new(COMPLETE),
            release: redis::Script::new(RELEASE),
        })
    }

    /// The prefix of every key (default `countersign:replay:`), to share a Redis between apps.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// What to do while Redis is unreachable (default: fail closed with 503).
    #[must_use]
    pub fn with_unavailable_policy(mut self, policy: UnavailablePolicy) -> Self {
        self.policy = policy;
        self
    }

    fn key(&self, key: &ReplayKey) -> String {
        format!("{}{}", self.prefix, key.to_hex())
    }

    /// Runs a compare-and-set `script` on `owner`'s claim of `key`.
    fn settle(
        &self,
        script: &redis::Script,
        key: &ReplayKey,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let mut connection = self.connection.clone();
        let script = script.clone();
        let (key, value) = (self.key(key), in_flight_value(owner));
        async move {
            let _: i64 = script
                .key(key)
                .arg(value)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| unavailable(&e))?;
            Ok(())
        }
    }
}

trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for redis::RedisError {
    /// The error without the URL (which may hold a password).
    fn kind_str(&self) -> String {
        format!("{:?}", self.kind())
    }
}

fn unavailable(error: &redis::RedisError) -> StoreError {
    StoreError(format!("Redis: {}", error.kind_str()))
}

fn in_flight_value(owner: &Owner) -> String {
    format!("inflight:{}", owner.as_str())
}

impl ReplayStore for RedisStore {
    fn claim(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        ttl: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        let mut connection = self.connection.clone();
        let key = self.key(key);
        let value = in_flight_value(owner);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        async move {
            // A key that expires between the failed SET and the GET is claimed on the next turn.
            for _ in 0..3 {
                let set: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| unavailable(&e))?;
                if set.is_some() {
                    return Ok(Claim::Claimed);
                }
                let current: Option<String> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| unavailable(&e))?;
                match current.as_deref() {
                    Some("done") => return Ok(Claim::Done),
                    Some(_) => return Ok(Claim::InFlight),
                    None => {}
                }
            }
            Ok(Claim::InFlight)
        }
    }

    fn complete(
        &self,
        key: &ReplayKey,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.settle(&self.complete, key, owner)
    }

    fn release(
        &self,
        key: &ReplayKey,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.settle(&self.release, key, owner)
    }

    fn fail_open(&self) -> bool {
        self.policy == UnavailablePolicy::FailOpen
    }
}
