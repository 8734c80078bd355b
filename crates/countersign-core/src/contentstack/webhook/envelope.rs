//! The body's top-level fields: read from a delivery ([`Envelope`]), and built the way
//! Contentstack builds them ([`WebhookBody`]).

use std::fmt;
use std::time::SystemTime;

use crate::contentstack::{Error, ErrorKind};

/// The top-level fields of a delivery that every handler needs; `data` stays in the body for
/// the handler's own types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub(crate) triggered_at: Option<String>,
    pub(crate) module: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) api_key: Option<String>,
    pub(crate) installation_app_uid: Option<String>,
}

#[derive(serde::Deserialize)]
struct RawEnvelope {
    triggered_at: Option<serde_json::Value>,
    module: Option<serde_json::Value>,
    event: Option<serde_json::Value>,
    api_key: Option<serde_json::Value>,
    #[serde(default)]
    data: InstallationAppUid,
}

/// `data.app_installation.app_uid` when `data` has it; any other `data` (an object without it,
/// an array, a string, `null`) is skipped without being built.
#[derive(Default)]
struct InstallationAppUid(Option<String>);

impl<'de> serde::Deserialize<'de> for InstallationAppUid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Looks for `key` in an object, then hands its value to `Inner`.
        struct Field<Inner>(&'static str, std::marker::PhantomData<Inner>);

        impl<'de, Inner: serde::Deserialize<'de> + Default> serde::de::Visitor<'de> for Field<Inner> {
            type Value = Inner;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Inner, A::Error> {
                let mut found = Inner::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == self.0 {
                        found = map.next_value()?;
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(found)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Inner, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Inner::default())
            }

            fn visit_bool<E>(self, _: bool) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_unit<E>(self) -> Result<Inner, E> {
                Ok(Inner::default())
            }
        }

        /// `app_uid` of `app_installation`, when it is a string.
        #[derive(Default)]
        struct AppUid(Option<String>);

        impl<'de> serde::Deserialize<'de> for AppUid {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value: Option<serde_json::Value> =
                    deserializer.deserialize_any(Field::<Option<serde_json::Value>>(
                        "app_uid",
                        std::marker::PhantomData,
                    ))?;
                Ok(Self(match value {
                    Some(serde_json::Value::String(uid)) => Some(uid),
                    _ => None,
                }))
            }
        }

        let AppUid(uid) = deserializer.deserialize_any(Field::<AppUid>(
            "app_installation",
            std::marker::PhantomData,
        ))?;
        Ok(Self(uid))
    }
}

/// The signed time of a webhook body as the RSA method reads it: its `triggered_at`, RFC 3339
/// in UTC with milliseconds. What a tool that signs a body it did not build can check first.
///
/// # Errors
/// [`ErrorKind::MissingTimestamp`](crate::contentstack::ErrorKind::MissingTimestamp) or
/// [`ErrorKind::MalformedTimestamp`](crate::contentstack::ErrorKind::MalformedTimestamp), as a
/// verifier would refuse it.
pub fn triggered_at(body: &[u8]) -> Result<SystemTime, Error> {
    Envelope::parse(body)?.signed_at()
}

impl Envelope {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, Error> {
        let raw: RawEnvelope = serde_json::from_slice(body).map_err(|e| {
            Error::new(
                ErrorKind::MalformedTimestamp,
                format!(
                    "the body is not a JSON object with a triggered_at ({})",
                    e.classify_name()
                ),
            )
        })?;
        let text = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        Ok(Self {
            triggered_at: raw.triggered_at.map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
            module: text(raw.module),
            event: text(raw.event),
            api_key: text(raw.api_key),
            installation_app_uid: raw.data.0,
        })
    }

    pub(super) fn signed_at(&self) -> Result<SystemTime, Error> {
        let text = self.triggered_at.as_deref().ok_or_else(|| {
            Error::new(ErrorKind::MissingTimestamp, "the body has no triggered_at")
        })?;
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map(SystemTime::from)
            .map_err(|_| {
                Error::new(
                    ErrorKind::MalformedTimestamp,
                    "triggered_at is not an RFC 3339 timestamp",
                )
            })
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "not an object of the expected shape",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

/// A delivery's body, built the way Contentstack builds it: `JSON.stringify` of an object whose
/// keys come in this order, `triggered_at` first, with `triggered_at` in UTC to the
/// millisecond (`2024-07-25T08:48:46.861Z`). For the CLI's `send`, load generators and tests.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use countersign_core::contentstack::WebhookBody;
///
/// let at = UNIX_EPOCH + Duration::from_micros(1_721_897_326_861_999);
/// let body = WebhookBody::new("entry", "publish")
///     .with_api_key("blt1")
///     .with_data(&serde_json::json!({"entry": {"uid": "blt9"}}))
///     .to_bytes(at);
/// assert_eq!(
///     body,
///     br#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","event":"publish","api_key":"blt1","data":{"entry":{"uid":"blt9"}}}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookBody {
    module: String,
    event: String,
    api_key: Option<String>,
    data: serde_json::Value,
}

impl WebhookBody {
    /// A body of `module` (`entry`, `asset`, `app_installation`, ...) and `event` (`publish`,
    /// `install`, ...), with no stack and `data` an empty object.
    #[must_use]
    pub fn new(module: impl Into<String>, event: impl Into<String>) -> Self {
        Self {
            module: module.into(),
            event: event.into(),
            api_key: None,
            data: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// The stack: `api_key`.
    #[must_use]
    pub fn with_api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(api_key.into());
        self
    }

    /// The event's `data`. Its keys come in `serde_json`'s order (sorted, unless its
    /// `preserve_order` feature is on): build `data` in the order you want it signed.
    #[must_use]
    pub fn with_data(mut self, data: &serde_json::Value) -> Self {
        self.data = data.clone();
        self
    }

    /// The bytes Contentstack would send for this event triggered at `triggered_at`.
    #[must_use]
    pub fn to_bytes(&self, triggered_at: SystemTime) -> Vec<u8> {
        self.to_json(triggered_at).into_bytes()
    }

    /// [`to_bytes`](Self::to_bytes), as text.
    #[must_use]
    pub fn to_json(&self, triggered_at: SystemTime) -> String {
        let text = |s: &str| serde_json::Value::from(s).to_string();
        let mut body = format!(
            r#"{{"triggered_at":"{}","module":{},"event":{}"#,
            triggered_at_text(triggered_at),
            text(&self.module),
            text(&self.event)
        );
        if let Some(api_key) = &self.api_key {
            body.push_str(r#","api_key":"#);
            body.push_str(&text(api_key));
        }
        body.push_str(r#","data":"#);
        body.push_str(&self.data.to_string());
        body.push('}');
        body
    }
}

/// `triggered_at` as Contentstack writes it: UTC, milliseconds, `Z`.
fn triggered_at_text(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    let at = at
        .replace_nanosecond(at.millisecond() as u32 * 1_000_000)
        .unwrap_or(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}
