//! Contentstack's regions, and where each publishes its signing key.

use std::fmt;
use std::str::FromStr;

use crate::error::{ConfigError, ConfigErrorKind};

/// The path of the signing key document on a region's app host.
pub const PUBLIC_KEYS_PATH: &str = "/.well-known/public-keys.json";

/// A Contentstack region, or a custom base URL (a proxy, a mock endpoint in tests).
///
/// Parsed case-insensitively from its name or an alias (`"us"`, `"aws-eu"`, `"AZURE_NA"`, ...),
/// or from an `http(s)://` base URL:
///
/// ```
/// use countersign_core::contentstack::Region;
/// let eu: Region = "AWS-EU".parse().unwrap();
/// assert_eq!(eu, Region::Eu);
/// assert_eq!(eu.public_keys_url(), "https://eu-app.contentstack.com/.well-known/public-keys.json");
/// let local: Region = "http://127.0.0.1:8080".parse().unwrap();
/// assert_eq!(local.public_keys_url(), "http://127.0.0.1:8080/.well-known/public-keys.json");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Region {
    /// AWS North America: `app.contentstack.com` (aliases `na`, `us`, `aws-na`).
    Na,
    /// AWS Europe: `eu-app.contentstack.com` (aliases `eu`, `aws-eu`).
    Eu,
    /// AWS Australia: `au-app.contentstack.com` (aliases `au`, `aws-au`).
    Au,
    /// Azure North America: `azure-na-app.contentstack.com`.
    AzureNa,
    /// Azure Europe: `azure-eu-app.contentstack.com`.
    AzureEu,
    /// GCP North America: `gcp-na-app.contentstack.com`.
    GcpNa,
    /// GCP Europe: `gcp-eu-app.contentstack.com`.
    GcpEu,
    /// Any other base URL (scheme, host and optional port, no trailing slash).
    Custom(String),
}

impl Region {
    /// The seven regions Contentstack runs.
    pub const ALL: [Region; 7] = [
        Region::Na,
        Region::Eu,
        Region::Au,
        Region::AzureNa,
        Region::AzureEu,
        Region::GcpNa,
        Region::GcpEu,
    ];

    /// The region's id in Contentstack's registry (`na`, `eu`, ..., or the custom base URL).
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            Self::Na => "na",
            Self::Eu => "eu",
            Self::Au => "au",
            Self::AzureNa => "azure-na",
            Self::AzureEu => "azure-eu",
            Self::GcpNa => "gcp-na",
            Self::GcpEu => "gcp-eu",
            Self::Custom(base) => base,
        }
    }

    /// The names the region is known by (its id first), as in Contentstack's registry, lower
    /// case.
    #[must_use]
    pub fn aliases(&self) -> &'static [&'static str] {
        match self {
            Self::Na => &["na", "us", "aws-na", "aws_na"],
            Self::Eu => &["eu", "aws-eu", "aws_eu"],
            Self::Au => &["au", "aws-au", "aws_au"],
            Self::AzureNa => &["azure-na", "azure_na"],
            Self::AzureEu => &["azure-eu", "azure_eu"],
            Self::GcpNa => &["gcp-na", "gcp_na"],
            Self::GcpEu => &["gcp-eu", "gcp_eu"],
            Self::Custom(_) => &[],
        }
    }

    /// The app host's base URL, e.g. `https://eu-app.contentstack.com`.
    #[must_use]
    pub fn app_base_url(&self) -> String {
        match self {
            Self::Na => "https://app.contentstack.com".to_owned(),
            Self::Custom(base) => base.clone(),
            other => format!("https://{}-app.contentstack.com", other.id()),
        }
    }

    /// Where the region publishes its webhook and app-token signing key.
    #[must_use]
    pub fn public_keys_url(&self) -> String {
        format!("{}{PUBLIC_KEYS_PATH}", self.app_base_url())
    }

    /// Where OAuth codes and refresh tokens are exchanged: Developer Hub's `/token`, as
    /// `@contentstack/management` posts them (`https://eu-developerhub-api.contentstack.com/token`),
    /// or `/apps-api/token` on a custom base URL.
    #[must_use]
    pub fn token_url(&self) -> String {
        match self {
            Self::Na => "https://developerhub-api.contentstack.com/token".to_owned(),
            Self::Custom(base) => format!("{base}/apps-api/token"),
            other => format!(
                "https://{}-developerhub-api.contentstack.com/token",
                other.id()
            ),
        }
    }

    /// The Content Management API's base URL, version included: `https://api.contentstack.io/v3`
    /// in North America, `https://eu-api.contentstack.com/v3` elsewhere, `{base}/v3` on a
    /// custom base URL.
    #[must_use]
    pub fn cma_base_url(&self) -> String {
        match self {
            Self::Na => "https://api.contentstack.io/v3".to_owned(),
            Self::Custom(base) => format!("{base}/v3"),
            other => format!("https://{}-api.contentstack.com/v3", other.id()),
        }
    }

    /// The region an OAuth redirect's `location` names (`NA`, `EU`, `AU`, `AZURE_NA`,
    /// `AZURE_EU`, `GCP_NA`, `GCP_EU`): the installation's region, where its code must be
    /// exchanged. Never a URL: a `location` comes with the redirect, and a URL there would send
    /// the code and the client's secret wherever the URL points. When this region is a custom
    /// base URL (a proxy, a local Developer Hub in tests), it serves every location.
    ///
    /// ```
    /// use countersign_core::contentstack::Region;
    /// assert_eq!(Region::Na.for_location("AZURE_EU").unwrap(), Region::AzureEu);
    /// assert!(Region::Na.for_location("https://evil.example").is_err());
    /// let local: Region = "http://127.0.0.1:8080".parse().unwrap();
    /// assert_eq!(local.for_location("EU").unwrap(), local);
    /// ```
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidRegion`] for anything but the seven names.
    pub fn for_location(&self, location: &str) -> Result<Region, ConfigError> {
        let lower = location.trim().to_ascii_lowercase();
        let named = Self::ALL
            .into_iter()
            .find(|region| region.location().eq_ignore_ascii_case(&lower))
            .ok_or_else(|| {
                ConfigError::new(
                    ConfigErrorKind::InvalidRegion,
                    "an OAuth location is one of NA, EU, AU, AZURE_NA, AZURE_EU, GCP_NA, GCP_EU",
                )
            })?;
        Ok(match self {
            Self::Custom(_) => self.clone(),
            _ => named,
        })
    }

    /// The name an OAuth redirect's `location` gives this region (`NA`, `AZURE_EU`, ...), or
    /// the base URL of a custom one.
    #[must_use]
    pub fn location(&self) -> &str {
        match self {
            Self::Na => "NA",
            Self::Eu => "EU",
            Self::Au => "AU",
            Self::AzureNa => "AZURE_NA",
            Self::AzureEu => "AZURE_EU",
            Self::GcpNa => "GCP_NA",
            Self::GcpEu => "GCP_EU",
            Self::Custom(base) => base,
        }
    }
}

/// Whether verification keys may be fetched from `url`: `https://`, or plain `http://` to
/// this machine (`localhost`, `127.0.0.0/8`, `[::1]`: tests and a local key server). Over
/// plain http anyone on the path could swap the key; a redirect is held to the same rule.
#[must_use]
pub fn is_trusted_key_url(url: &str) -> bool {
    crate::ip::is_secure_url(url)
}

impl FromStr for Region {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.starts_with("http://") || text.starts_with("https://") {
            let base = crate::ip::secure_base_url(text).ok_or_else(|| {
                ConfigError::new(
                    ConfigErrorKind::InvalidRegion,
                    format!(
                        "a custom region is an https base URL such as https://host:port (keys are fetched over https only; \
                         plain http to this machine excepted), not {text:?}"
                    ),
                )
            })?;
            return Ok(Self::Custom(base.to_owned()));
        }
        let lower = text.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|region| region.aliases().contains(&lower.as_str()))
            .ok_or_else(|| {
                ConfigError::new(
                    ConfigErrorKind::InvalidRegion,
                    format!(
                        "unknown Contentstack region {text:?}; known: na (us), eu, au, azure-na, azure-eu, gcp-na, gcp-eu, \
                         or a base URL"
                    ),
                )
            })
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

#[cfg(test)]
mod key_url_tests {
    use super::is_trusted_key_url;

    #[test]
    fn keys_come_over_https_or_from_this_machine() {
        for url in [
            "https://eu-app.contentstack.com/.well-known/public-keys.json",
            "HTTPS://host:8443/keys.json",
            "http://127.0.0.1:8080/.well-known/public-keys.json",
            "http://127.8.9.10/keys.json",
            "http://localhost:3000/keys.json",
            "http://[::1]:9000/keys.json",
            "http://user@127.0.0.1/keys.json",
        ] {
            assert!(is_trusted_key_url(url), "{url}");
        }
        for url in [
            "http://app.contentstack.com/.well-known/public-keys.json",
            "http://10.0.0.1/keys.json",
            "http://localhost.evil.example/keys.json",
            "http://127.0.0.1.evil.example/keys.json",
            "http://evil.example@/keys.json",
            "http://[2001:db8::1]/keys.json",
            "ftp://127.0.0.1/keys.json",
            "https://",
            "127.0.0.1/keys.json",
            // WHATWG reads `\` as `/`: the host is keys.example, not the loopback address
            // after the `@` that splitting by hand saw.
            "http://keys.example\\@127.0.0.1/x",
            "http://keys.example\\x@localhost/x",
        ] {
            assert!(!is_trusted_key_url(url), "{url}");
        }
        for base in [
            "http://keys.example\\@127.0.0.1",
            "https://user@host.example",
            "https://host.example/path",
            "https://host.example?q",
        ] {
            assert!(base.parse::<super::Region>().is_err(), "{base}");
        }
        assert!("http://keys.example.com".parse::<super::Region>().is_err());
        assert!("http://127.0.0.1:8080".parse::<super::Region>().is_ok());
    }
}
