//! What a Contentstack webhook is about: its [`Module`] and its [`Event`], typed.
//!
//! Contentstack does not publish a closed list of either, and adds to both; each type is an
//! enum of the names we know with an `Other` variant that keeps any other name as sent.
//! Parsing never fails, so an unknown name never fails a request.
//!
//! ```
//! use countersign_core::contentstack::{Event, Module, Phase};
//!
//! assert_eq!(Module::parse("entry"), Module::Entry);
//! assert_eq!(Event::parse("publish"), Event::Publish(None));
//! assert_eq!(Event::parse("publish.success"), Event::Publish(Some(Phase::Success)));
//! assert_eq!(Event::parse("archive"), Event::Other("archive".into()));
//! assert_eq!(Event::parse("publish.success").as_str(), "publish.success");
//!
//! match Event::parse("deploy.fail") {
//!     Event::Deploy(Some(Phase::Fail)) => { /* a release failed to deploy */ }
//!     Event::Publish(_) | Event::Unpublish(_) => {}
//!     _ => {}
//! }
//! ```

use std::borrow::Cow;
use std::fmt;

use crate::names::{open_enum, string_serde};

open_enum! {
    /// A webhook's `module`: what kind of thing the event is about.
    pub enum Module {
        /// An entry.
        Entry = "entry",
        /// An asset.
        Asset = "asset",
        /// A content type.
        ContentType = "content_type",
        /// A global field.
        GlobalField = "global_field",
        /// A release (its deployment).
        Release = "release",
        /// An environment.
        Environment = "environment",
        /// A workflow stage.
        Workflow = "workflow",
        /// An installation of the app (`install`, `upgrade`, `uninstall`): it names the app.
        AppInstallation = "app_installation",
    }
}

/// Which step of a long operation an event reports: the `.start`, `.success` and `.fail` forms
/// of `publish`, `unpublish` and `deploy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// `.start`
    Start,
    /// `.success`
    Success,
    /// `.fail`
    Fail,
}

impl Phase {
    /// `start`, `success` or `fail`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Success => "success",
            Self::Fail => "fail",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "start" => Some(Self::Start),
            "success" => Some(Self::Success),
            "fail" => Some(Self::Fail),
            _ => None,
        }
    }
}

/// A webhook's `event`: what happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// `create`
    Create,
    /// `update`
    Update,
    /// `delete`
    Delete,
    /// `publish`, or one of its `.start/.success/.fail` forms.
    Publish(Option<Phase>),
    /// `unpublish`, or one of its `.start/.success/.fail` forms.
    Unpublish(Option<Phase>),
    /// `deploy` (a release), or one of its `.start/.success/.fail` forms.
    Deploy(Option<Phase>),
    /// `install` (an installation event).
    Install,
    /// `upgrade` (an installation event; the channel is named `...update`).
    Upgrade,
    /// `uninstall` (an installation event).
    Uninstall,
    /// Any other event, kept as sent.
    Other(String),
}

impl Event {
    /// The known event named `text`, or [`Event::Other`].
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let (base, phase) = match text.split_once('.') {
            Some((base, phase)) => match Phase::parse(phase) {
                Some(phase) => (base, Some(phase)),
                None => return Self::Other(text.to_owned()),
            },
            None => (text, None),
        };
        match (base, phase) {
            ("publish", phase) => Self::Publish(phase),
            ("unpublish", phase) => Self::Unpublish(phase),
            ("deploy", phase) => Self::Deploy(phase),
            ("create", None) => Self::Create,
            ("update", None) => Self::Update,
            ("delete", None) => Self::Delete,
            ("install", None) => Self::Install,
            ("upgrade", None) => Self::Upgrade,
            ("uninstall", None) => Self::Uninstall,
            _ => Self::Other(text.to_owned()),
        }
    }

    /// The event as sent (`publish`, `publish.success`, ...).
    #[must_use]
    pub fn as_str(&self) -> Cow<'_, str> {
        let (base, phase) = match self {
            Self::Create => return Cow::Borrowed("create"),
            Self::Update => return Cow::Borrowed("update"),
            Self::Delete => return Cow::Borrowed("delete"),
            Self::Install => return Cow::Borrowed("install"),
            Self::Upgrade => return Cow::Borrowed("upgrade"),
            Self::Uninstall => return Cow::Borrowed("uninstall"),
            Self::Other(other) => return Cow::Borrowed(other),
            Self::Publish(phase) => ("publish", phase),
            Self::Unpublish(phase) => ("unpublish", phase),
            Self::Deploy(phase) => ("deploy", phase),
        };
        match phase {
            None => Cow::Borrowed(base),
            Some(phase) => Cow::Owned(format!("{base}.{}", phase.as_str())),
        }
    }

    /// The step of a long operation, for the `.start/.success/.fail` forms.
    #[must_use]
    pub fn phase(&self) -> Option<Phase> {
        match self {
            Self::Publish(phase) | Self::Unpublish(phase) | Self::Deploy(phase) => *phase,
            _ => None,
        }
    }
}

impl From<&str> for Event {
    fn from(text: &str) -> Self {
        Self::parse(text)
    }
}

impl std::str::FromStr for Event {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(text))
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl PartialEq<str> for Event {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Event {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

string_serde!(Event);
