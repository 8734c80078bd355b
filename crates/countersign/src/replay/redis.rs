//! The Redis replay store: every instance behind a load balancer agrees on what it has seen.

use std::future::Future;
use std::time::Duration;

use countersign_core::{ConfigError, ConfigErrorKind};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use countersign_core::replay::{Claim, Owner, ReplayKey, ReplayStore, StoreError, StoreErrorKind};

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

/// Claims a delivery for the caller (ARGV[1]) for a lease of ARGV[2] ms. Idempotent for one
/// owner: a claim already the caller's is extended, so that a claim whose answer was lost can
/// be asked again.
const CLAIM: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 'claimed'
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 'claimed'
end
if current == 'done' then
  return 'done'
end
return 'inflight'";

/// Extends the caller's lease if, and only if, the claim is still the caller's.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// Marks a delivery done for ARGV[2] ms if the claim is the caller's or nobody's (a lapsed
/// lease); another owner's live claim is left alone.
const COMPLETE: &str = r"
local current = redis.call('GET', KEYS[1])
if not current or current == ARGV[1] then
  redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
  return 1
end
return 0";

/// Forgets a claim if, and only if, it is still the caller's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Remembers deliveries in Redis, through a reconnecting connection manager. A claim is the key
/// set to `inflight:<owner>` with the lease as its expiry; claiming, renewing, completing and
/// releasing are compare-and-set scripts (`EVALSHA`, loaded again after a Redis restart), so
/// that one instance never takes over, renews, completes or releases another's claim.
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    connection: ConnectionManager,
    prefix: String,
    policy: UnavailablePolicy,
    claim: redis::Script,
    renew: redis::Script,
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
    /// one-second bounds on connecting and answering ([`with_timeout`](Self::with_timeout)).
    /// Call it within a Tokio runtime.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSetting`] when `url` is not a Redis URL.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        let invalid = |e: redis::RedisError| {
            ConfigError::new(
                ConfigErrorKind::InvalidSetting,
                format!("cannot use the Redis URL: {}", e.kind_str()),
            )
        };
        let client = redis::Client::open(url).map_err(invalid)?;
        let connection = lazy_connection(&client, DEFAULT_TIMEOUT).map_err(invalid)?;
        Ok(Self {
            client,
            connection,
            prefix: "countersign:replay:".to_owned(),
            policy: UnavailablePolicy::default(),
            claim: redis::Script::new(CLAIM),
            renew: redis::Script::new(RENEW),
            complete: redis::Script::new(COMPLETE),
            release: redis::Script::new(RELEASE),
        })
    }

    /// Bounds each connection attempt and each answer by `timeout` (default 1 s). Keep it
    /// below the replay guard's lease.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        // Building a lazy connection fails only for push-subscription settings, never set
        // here; should it fail, the store keeps its current connection.
        if let Ok(connection) = lazy_connection(&self.client, timeout) {
            self.connection = connection;
        }
        self
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

    /// Runs a compare-and-set `script` on `owner`'s claim of `key`, with `millis` (a lease or
    /// a TTL) as its second argument when given.
    fn run<T: redis::FromRedisValue + Send>(
        &self,
        script: &redis::Script,
        key: &ReplayKey,
        owner: &Owner,
        millis: Option<Duration>,
    ) -> impl Future<Output = Result<T, StoreError>> + Send {
        let mut connection = self.connection.clone();
        let mut invocation = script.key(self.key(key));
        invocation.arg(in_flight_value(owner));
        if let Some(millis) = millis {
            invocation.arg(u64::try_from(millis.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        async move {
            invocation
                .invoke_async(&mut connection)
                .await
                .map_err(|e| unavailable(&e))
        }
    }
}

/// The default bound on connecting and answering.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection manager that connects on first use, bounded by `timeout`.
fn lazy_connection(
    client: &redis::Client,
    timeout: Duration,
) -> Result<ConnectionManager, redis::RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(timeout);
    ConnectionManager::new_lazy_with_config(client.clone(), config)
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

/// The error, by kind, without the URL (which may hold a password).
fn unavailable(error: &redis::RedisError) -> StoreError {
    let kind = if error.is_timeout() {
        StoreErrorKind::Timeout
    } else if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal()
    {
        StoreErrorKind::Unavailable
    } else {
        StoreErrorKind::Protocol
    };
    StoreError::new(kind, format!("Redis: {}", error.kind_str()))
}

fn in_flight_value(owner: &Owner) -> String {
    format!("inflight:{}", owner.as_str())
}

impl ReplayStore for RedisStore {
    fn claim(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        let answer = self.run::<String>(&self.claim, key, owner, Some(lease));
        async move {
            match answer.await?.as_str() {
                "claimed" => Ok(Claim::Claimed),
                "done" => Ok(Claim::Done),
                _ => Ok(Claim::InFlight),
            }
        }
    }

    fn renew(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let answer = self.run::<i64>(&self.renew, key, owner, Some(lease));
        async move { Ok(answer.await? == 1) }
    }

    fn complete(
        &self,
        key: &ReplayKey,
        owner: &Owner,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let answer = self.run::<i64>(&self.complete, key, owner, Some(ttl));
        async move { answer.await.map(drop) }
    }

    fn release(
        &self,
        key: &ReplayKey,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let answer = self.run::<i64>(&self.release, key, owner, None);
        async move { answer.await.map(drop) }
    }

    fn fail_open(&self) -> bool {
        self.policy == UnavailablePolicy::FailOpen
    }
}
