//! A secret bound to a tenant: the rule both providers' verifiers apply to a secret that one
//! tenant chose (a Contentful space's webhook secret, a Contentstack stack's HMAC secret).

/// A secret that verifies the requests of one tenant only, or of any tenant.
#[derive(Clone)]
pub(crate) struct Bound<S> {
    pub(crate) secret: S,
    tenant: Option<String>,
}

impl<S> Bound<S> {
    /// `secret`, for the requests of any tenant.
    pub(crate) fn any(secret: S) -> Self {
        Self {
            secret,
            tenant: None,
        }
    }

    /// `secret`, for the requests that sign `tenant` only.
    pub(crate) fn to(tenant: String, secret: S) -> Self {
        Self {
            secret,
            tenant: Some(tenant),
        }
    }

    /// The tenant it is bound to, if any.
    pub(crate) fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Whether this secret may verify a request whose signed tenant is `tenant`: a bound
    /// secret only its own tenant's, never one that names none.
    pub(crate) fn serves(&self, tenant: Option<&str>) -> bool {
        self.tenant
            .as_deref()
            .is_none_or(|bound| Some(bound) == tenant)
    }
}
