//! Binding a verified delivery to this app and its tenants: [`Tenancy`].

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use super::{Error, ErrorKind, VerifiedWebhook};

/// Says whether a stack (its API key) is one of this app's tenants.
pub trait StackCheck: Send + Sync + 'static {
    /// Whether `api_key` is ours. An error means "cannot tell now" (a database down): the
    /// delivery is answered so that Contentstack retries (503).
    fn is_ours(
        &self,
        api_key: &str,
    ) -> impl Future<Output = Result<bool, TenantUnavailable>> + Send;

    /// Whether every stack is ours, so that a delivery is not even asked for one. `false` by
    /// default; [`AnyStack`] says `true`.
    fn accepts_any(&self) -> bool {
        false
    }
}

/// Every stack is ours: no stack check (the default of [`Tenancy`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyStack;

impl StackCheck for AnyStack {
    fn is_ours(&self, _: &str) -> impl Future<Output = Result<bool, TenantUnavailable>> + Send {
        std::future::ready(Ok(true))
    }

    fn accepts_any(&self) -> bool {
        true
    }
}

/// A fixed set of stack API keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackAllowlist(HashSet<String>);

impl StackAllowlist {
    /// The stacks with these API keys.
    pub fn new(api_keys: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self(api_keys.into_iter().map(Into::into).collect())
    }

    /// Whether `api_key` is in the list.
    #[must_use]
    pub fn contains(&self, api_key: &str) -> bool {
        self.0.contains(api_key)
    }
}

impl StackCheck for StackAllowlist {
    fn is_ours(
        &self,
        api_key: &str,
    ) -> impl Future<Output = Result<bool, TenantUnavailable>> + Send {
        std::future::ready(Ok(self.contains(api_key)))
    }
}

/// A [`StackCheck`] made of an async function, for instance a look-up in the app's own
/// installation records. Made by [`stack_check_fn`].
#[derive(Clone)]
pub struct StackCheckFn<F>(F);

/// A [`StackCheck`] from `check`, which is given the stack's API key:
///
/// ```
/// use countersign_core::contentstack::{TenantUnavailable, stack_check_fn};
///
/// let stacks = stack_check_fn(|api_key: &str| {
///     let api_key = api_key.to_owned(); // the future must own what it needs
///     async move { Ok::<_, TenantUnavailable>(api_key.starts_with("blt")) }
/// });
/// # let _ = stacks;
/// ```
pub fn stack_check_fn<F, Fut>(check: F) -> StackCheckFn<F>
where
    F: Fn(&str) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, TenantUnavailable>> + Send + 'static,
{
    StackCheckFn(check)
}

impl<F, Fut> StackCheck for StackCheckFn<F>
where
    F: Fn(&str) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, TenantUnavailable>> + Send + 'static,
{
    fn is_ours(
        &self,
        api_key: &str,
    ) -> impl Future<Output = Result<bool, TenantUnavailable>> + Send {
        (self.0)(api_key)
    }
}

impl<F> fmt::Debug for StackCheckFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StackCheckFn")
    }
}

/// A [`StackCheck`] could not answer now. The message must not hold a secret (a database
/// URL with a password, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantUnavailable(String);

impl TenantUnavailable {
    /// Why the check cannot answer.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for TenantUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TenantUnavailable {}

/// Any [`StackCheck`] behind one type, chosen at run time: a check of the installations when
/// the app uid is known, every stack otherwise, without a second copy of the routes.
///
/// ```
/// use countersign_core::contentstack::{AnyStack, BoxStackCheck, StackAllowlist, Tenancy};
///
/// let stacks = match std::env::var("STACKS") {
///     Ok(list) => BoxStackCheck::new(StackAllowlist::new(list.split(','))),
///     Err(_) => BoxStackCheck::new(AnyStack),
/// };
/// let tenancy = Tenancy::new().with_stacks(stacks);
/// # let _ = tenancy;
/// ```
#[derive(Clone)]
pub struct BoxStackCheck(Arc<dyn ErasedStackCheck>);

impl BoxStackCheck {
    /// `check`, boxed.
    pub fn new(check: impl StackCheck) -> Self {
        Self(Arc::new(check))
    }
}

impl fmt::Debug for BoxStackCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxStackCheck")
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// [`StackCheck`] with a boxed future that owns what it needs, so that it can be a trait
/// object.
trait ErasedStackCheck: Send + Sync + 'static {
    fn is_ours(self: Arc<Self>, api_key: String) -> BoxFuture<Result<bool, TenantUnavailable>>;
    fn accepts_any(&self) -> bool;
}

impl<S: StackCheck> ErasedStackCheck for S {
    fn is_ours(self: Arc<Self>, api_key: String) -> BoxFuture<Result<bool, TenantUnavailable>> {
        Box::pin(async move { StackCheck::is_ours(&*self, &api_key).await })
    }

    fn accepts_any(&self) -> bool {
        StackCheck::accepts_any(self)
    }
}

impl StackCheck for BoxStackCheck {
    fn is_ours(
        &self,
        api_key: &str,
    ) -> impl Future<Output = Result<bool, TenantUnavailable>> + Send {
        Arc::clone(&self.0).is_ours(api_key.to_owned())
    }

    fn accepts_any(&self) -> bool {
        self.0.accepts_any()
    }
}

/// Which verified deliveries are this app's.
///
/// One Contentstack signing key per region signs the webhooks and app-tokens of every customer:
/// a valid signature proves "sent by Contentstack", not "sent for this app". Anyone can point a
/// webhook of their own stack at your backend, capture a signed delivery and send it on to
/// another backend within the tolerance. [`Tenancy`] is the check that comes after the
/// signature:
///
/// - an installation event (`module` `app_installation`) is accepted only when it is signed
///   with Contentstack's RSA key (a stack's HMAC secret is its admins' to read, so they could
///   sign an uninstall with it), and its `data.app_installation.app_uid` is this app's uid
///   (when one is configured). It is not asked about the stack: an `install` is how a stack
///   becomes ours;
/// - every other delivery is accepted only when its `api_key` is one of our stacks, as a
///   [`StackCheck`] says: a static [`StackAllowlist`], or [`stack_check_fn`] over the app's own
///   installation records.
///
/// ```
/// use countersign_core::contentstack::{StackAllowlist, Tenancy};
///
/// // Installation events of app 6650…, and content events of two stacks only.
/// let tenancy = Tenancy::new()
///     .with_app_uid("6650f7c8e2b0a10012345678")
///     .with_stacks(StackAllowlist::new(["blt0000000000000001", "blt0000000000000002"]));
/// # let _ = tenancy;
/// ```
///
/// Default: no app uid (installation events are treated as any other delivery) and every stack
/// ([`AnyStack`]): it accepts everything until narrowed. With a stack check, a delivery that
/// names no stack (`api_key`) is refused.
#[derive(Debug, Clone, Default)]
pub struct Tenancy<S = AnyStack> {
    app_uid: Option<String>,
    stacks: S,
}

impl Tenancy {
    /// Accepts every delivery; narrow it with [`with_app_uid`](Self::with_app_uid) and
    /// [`with_stacks`](Self::with_stacks).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Tenancy<S> {
    /// This app's uid: installation events of any other app are refused.
    #[must_use]
    pub fn with_app_uid(mut self, app_uid: impl Into<String>) -> Self {
        self.app_uid = Some(app_uid.into());
        self
    }

    /// Which stacks are ours: deliveries of any other stack (installation events of this app
    /// aside) are refused.
    #[must_use]
    pub fn with_stacks<T: StackCheck>(self, stacks: T) -> Tenancy<T> {
        Tenancy {
            app_uid: self.app_uid,
            stacks,
        }
    }

    /// The app uid in force.
    #[must_use]
    pub fn app_uid(&self) -> Option<&str> {
        self.app_uid.as_deref()
    }
}

impl<S: StackCheck> Tenancy<S> {
    /// Whether `webhook` is ours.
    ///
    /// # Errors
    /// [`ErrorKind::InstallationEventNotRsa`] for an installation event signed with an HMAC
    /// secret (whatever the app uid), [`ErrorKind::AppMismatch`] for an installation event of
    /// another app,
    /// [`ErrorKind::StackNotAllowed`] for a delivery of a stack that is not ours (or of none),
    /// [`ErrorKind::TenantCheckUnavailable`] when the [`StackCheck`] cannot answer.
    pub async fn check(&self, webhook: &VerifiedWebhook) -> Result<(), Error> {
        if webhook.is_installation_event()
            && matches!(webhook.verified_by(), super::VerifiedBy::Hmac { .. })
        {
            // A stack's HMAC secret is its admins' to read: with it, an admin could sign an
            // uninstall (or an install) for their stack. The Marketplace signs with RSA.
            return Err(Error::new(
                ErrorKind::InstallationEventNotRsa,
                "an installation event must be signed with Contentstack's RSA key; this one was signed with a stack's HMAC secret, which the stack's admins hold",
            ));
        }
        if let Some(ours) = self.app_uid.as_deref()
            && webhook.is_installation_event()
        {
            return match webhook.installation_app_uid() {
                Some(uid) if uid == ours => Ok(()),
                Some(_) => Err(Error::new(
                    ErrorKind::AppMismatch,
                    "the installation event is for another app (data.app_installation.app_uid)",
                )),
                None => Err(Error::new(
                    ErrorKind::AppMismatch,
                    "the installation event names no app (data.app_installation.app_uid)",
                )),
            };
        }
        if self.stacks.accepts_any() {
            return Ok(());
        }
        let api_key = webhook.api_key().ok_or_else(|| {
            Error::new(
                ErrorKind::StackNotAllowed,
                "the delivery names no stack (api_key)",
            )
        })?;
        match self.stacks.is_ours(api_key).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::new(
                ErrorKind::StackNotAllowed,
                "the delivery is for a stack that is not one of this app's installations",
            )),
            Err(unavailable) => Err(Error::new(
                ErrorKind::TenantCheckUnavailable,
                format!("cannot tell whether the stack is ours: {unavailable}"),
            )),
        }
    }
}
