//! Where verification keys come from.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use super::KeySet;

/// A source of Contentstack verification keys: static keys from configuration, or the
/// region's well-known endpoint (`countersign::WellKnownKeys`, which caches and refreshes).
///
/// Verifiers ask for [`keys`](KeySource::keys) on every request, so an implementation must be
/// cheap when it has keys. When a signature fails against the keys it gave,
/// [`refresh`](KeySource::refresh) gives it the chance to look for a rotated key.
pub trait KeySource: Send + Sync + 'static {
    /// The keys to verify with now.
    ///
    /// # Errors
    /// [`KeyUnavailable`] when there is no key at all (never fetched yet, endpoint down). The
    /// request is then not rejected as forged: the sender should retry.
    fn keys(&self) -> impl Future<Output = Result<Arc<KeySet>, KeyUnavailable>> + Send;

    /// A signature failed against `stale`: if the source can find newer keys (rate-limited), it
    /// returns them, and the signature is checked once more. Static sources return `None`.
    fn refresh(&self, stale: &Arc<KeySet>) -> impl Future<Output = Option<Arc<KeySet>>> + Send {
        let _ = stale;
        std::future::ready(None)
    }
}

impl<S: KeySource> KeySource for Arc<S> {
    fn keys(&self) -> impl Future<Output = Result<Arc<KeySet>, KeyUnavailable>> + Send {
        (**self).keys()
    }

    fn refresh(&self, stale: &Arc<KeySet>) -> impl Future<Output = Option<Arc<KeySet>>> + Send {
        (**self).refresh(stale)
    }
}

/// Any [`KeySource`] behind one type: pick the source at run time (a static key in dev, the
/// well-known endpoint in production) without a generic parameter or an enum of your own.
/// Cheap to clone.
///
/// ```
/// use countersign_core::contentstack::{BoxKeySource, NoKeys, StaticKeys};
///
/// # let pem = include_str!("../../tests/data/keys/contentstack-a.public.pem");
/// let keys = match std::env::var("CONTENTSTACK_PUBLIC_KEY") {
///     Ok(path) => BoxKeySource::new(StaticKeys::from_file(path).unwrap()),
///     Err(_) => BoxKeySource::new(StaticKeys::parse(pem).unwrap()),
/// };
/// # let _ = (keys, BoxKeySource::new(NoKeys));
/// ```
#[derive(Clone)]
pub struct BoxKeySource(Arc<dyn ErasedKeySource>);

impl BoxKeySource {
    /// `source`, boxed.
    pub fn new(source: impl KeySource) -> Self {
        Self(Arc::new(source))
    }
}

impl std::fmt::Debug for BoxKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxKeySource")
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// [`KeySource`] with boxed futures that own what they need, so that it can be a trait
/// object.
trait ErasedKeySource: Send + Sync + 'static {
    fn keys(self: Arc<Self>) -> BoxFuture<Result<Arc<KeySet>, KeyUnavailable>>;
    fn refresh(self: Arc<Self>, stale: Arc<KeySet>) -> BoxFuture<Option<Arc<KeySet>>>;
}

impl<K: KeySource> ErasedKeySource for K {
    fn keys(self: Arc<Self>) -> BoxFuture<Result<Arc<KeySet>, KeyUnavailable>> {
        Box::pin(async move { KeySource::keys(&*self).await })
    }

    fn refresh(self: Arc<Self>, stale: Arc<KeySet>) -> BoxFuture<Option<Arc<KeySet>>> {
        Box::pin(async move { KeySource::refresh(&*self, &stale).await })
    }
}

impl KeySource for BoxKeySource {
    fn keys(&self) -> impl Future<Output = Result<Arc<KeySet>, KeyUnavailable>> + Send {
        Arc::clone(&self.0).keys()
    }

    fn refresh(&self, stale: &Arc<KeySet>) -> impl Future<Output = Option<Arc<KeySet>>> + Send {
        Arc::clone(&self.0).refresh(Arc::clone(stale))
    }
}

/// No verification key is available: the request cannot be judged now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUnavailable {
    message: String,
}

impl KeyUnavailable {
    /// Says why there is no key.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Why there is no key.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for KeyUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no Contentstack verification key is available: {}",
            self.message
        )
    }
}

impl std::error::Error for KeyUnavailable {}

/// A key source with no key: for HMAC-signed deliveries only.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoKeys;

impl KeySource for NoKeys {
    fn keys(&self) -> impl Future<Output = Result<Arc<KeySet>, KeyUnavailable>> + Send {
        std::future::ready(Err(KeyUnavailable::new(
            "no Contentstack key source is configured",
        )))
    }
}

/// Keys fixed at configuration: from a file, an environment variable or a string.
///
/// ```
/// # fn main() -> Result<(), countersign_core::ConfigError> {
/// use countersign_core::contentstack::StaticKeys;
/// # let dir = std::env::temp_dir().join("countersign-doc-static-keys");
/// # std::fs::create_dir_all(&dir).unwrap();
/// # let path = dir.join("public.pem");
/// # std::fs::write(&path, include_str!("../../tests/data/keys/contentstack-a.public.pem")).unwrap();
/// let keys = StaticKeys::from_file(&path)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StaticKeys {
    keys: Arc<KeySet>,
}

impl StaticKeys {
    /// These keys.
    #[must_use]
    pub fn new(keys: KeySet) -> Self {
        Self {
            keys: Arc::new(keys),
        }
    }

    /// Keys from a file: PEM (PKCS#1 or SPKI, one or more) or a `public-keys.json` document.
    ///
    /// # Errors
    /// When the file cannot be read or holds no usable key.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, crate::error::ConfigError> {
        KeySet::from_file(path).map(Self::new)
    }

    /// Keys from an environment variable holding PEM text or a `public-keys.json` document.
    ///
    /// # Errors
    /// When the variable is unset or holds no usable key.
    pub fn from_env(name: &str) -> Result<Self, crate::error::ConfigError> {
        KeySet::from_env(name).map(Self::new)
    }

    /// Keys from PEM text or a `public-keys.json` document.
    ///
    /// # Errors
    /// When the text holds no usable key.
    pub fn parse(text: &str) -> Result<Self, crate::error::ConfigError> {
        KeySet::parse(text).map(Self::new)
    }

    /// The keys.
    #[must_use]
    pub fn key_set(&self) -> &Arc<KeySet> {
        &self.keys
    }
}

impl KeySource for StaticKeys {
    fn keys(&self) -> impl Future<Output = Result<Arc<KeySet>, KeyUnavailable>> + Send {
        std::future::ready(Ok(Arc::clone(&self.keys)))
    }
}

impl From<KeyUnavailable> for super::Error {
    fn from(unavailable: KeyUnavailable) -> Self {
        Self::new(super::ErrorKind::KeyUnavailable, unavailable.to_string())
    }
}

/// The refresh-once policy: `verify` with the source's keys; when that fails as `stale` says
/// (a signature that matches none of them), ask the source once for newer keys and verify
/// again with those. No key at all is `E::from(KeyUnavailable)`. Every verifier of
/// Contentstack signatures (webhooks, app-tokens) goes through here.
///
/// # Errors
/// What `verify` answered last, or the source's [`KeyUnavailable`].
pub async fn with_fresh_keys<K, T, E>(
    source: &K,
    verify: impl Fn(&KeySet) -> Result<T, E>,
    stale: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    K: KeySource,
    E: From<KeyUnavailable>,
{
    let keys = source.keys().await?;
    match verify(&keys) {
        Err(error) if stale(&error) => match source.refresh(&keys).await {
            Some(fresh) => verify(&fresh),
            None => Err(error),
        },
        result => result,
    }
}
