//! [`Provider`]: which vendor signed a request, in every crate and label of the workspace.

/// Which provider sent a request or delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// Contentstack: a webhook, or a signed UI location's `app-token`.
    Contentstack,
    /// Contentful: a webhook, app event, app action or frontend-signed request.
    Contentful,
}

impl Provider {
    /// `contentstack` or `contentful`: as stored, logged and labelled.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Contentstack => "contentstack",
            Self::Contentful => "contentful",
        }
    }

    /// The provider named `name` ([`Provider::as_str`]).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "contentstack" => Some(Self::Contentstack),
            "contentful" => Some(Self::Contentful),
            _ => None,
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
