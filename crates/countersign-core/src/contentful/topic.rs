//! What a Contentful webhook or app event is about: the [`Topic`] of `X-Contentful-Topic`,
//! typed.
//!
//! A topic reads `ContentManagement.Entry.publish`: an origin, an [`Entity`] and an
//! [`Action`]. App event subscriptions name the same topics without the origin
//! (`Entry.publish`). Contentful adds entities and actions over time; each type keeps any
//! name it does not know as sent, and parsing never fails, so an unknown topic never fails a
//! request.
//!
//! ```
//! use countersign_core::contentful::{Action, Entity, Topic};
//!
//! let topic = Topic::parse("ContentManagement.Entry.publish");
//! assert_eq!(topic.entity(), &Entity::Entry);
//! assert_eq!(topic.action(), &Action::Publish);
//! assert_eq!(topic.as_str(), "ContentManagement.Entry.publish");
//! assert!(topic.is(Entity::Entry, Action::Publish));
//!
//! match (topic.entity(), topic.action()) {
//!     (Entity::Entry | Entity::Asset, Action::Publish) => { /* rebuild the site */ }
//!     (Entity::AppInstallation, Action::Delete) => { /* forget the space */ }
//!     _ => { /* acknowledge what you do not handle */ }
//! }
//!
//! let unknown = Topic::parse("ContentManagement.Hologram.levitate");
//! assert_eq!(unknown.entity(), &Entity::Other("Hologram".into()));
//! ```

use std::fmt;

use crate::names::{open_enum, string_serde};

/// The origin of content events: `ContentManagement`.
pub const CONTENT_MANAGEMENT: &str = "ContentManagement";

open_enum! {
    /// The kind of thing a topic is about.
    pub enum Entity {
        /// An entry.
        Entry = "Entry",
        /// An asset.
        Asset = "Asset",
        /// A content type.
        ContentType = "ContentType",
        /// An installation of an app in a space environment.
        AppInstallation = "AppInstallation",
        /// A release.
        Release = "Release",
        /// An action on a release.
        ReleaseAction = "ReleaseAction",
        /// A scheduled action.
        ScheduledAction = "ScheduledAction",
        /// A bulk action.
        BulkAction = "BulkAction",
        /// A task on an entry.
        Task = "Task",
        /// A comment.
        Comment = "Comment",
        /// An environment.
        Environment = "Environment",
        /// A call of an app action.
        AppActionCall = "AppActionCall",
    }
}

open_enum! {
    /// What happened to it.
    pub enum Action {
        /// Created.
        Create = "create",
        /// Saved.
        Save = "save",
        /// Saved automatically by the web app.
        AutoSave = "auto_save",
        /// Archived.
        Archive = "archive",
        /// Unarchived.
        Unarchive = "unarchive",
        /// Published.
        Publish = "publish",
        /// Unpublished.
        Unpublish = "unpublish",
        /// Deleted.
        Delete = "delete",
        /// Updated (app installations).
        Update = "update",
        /// Executed (release, scheduled and bulk actions).
        Execute = "execute",
        /// Completed.
        Complete = "complete",
        /// Called (app actions).
        Call = "call",
    }
}

/// The topic of a webhook or app event, as `X-Contentful-Topic` sends it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    text: String,
    entity: Entity,
    action: Action,
}

impl Topic {
    /// Reads `Origin.Entity.action` or `Entity.action`. Never fails: what does not have this
    /// shape has the entity and action [`Other`](Entity::Other) of the whole text.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut parts = text.rsplitn(3, '.');
        let (action, entity) = match (parts.next(), parts.next()) {
            (Some(action), Some(entity)) if !action.is_empty() && !entity.is_empty() => {
                (Action::parse(action), Entity::parse(entity))
            }
            _ => (
                Action::Other(text.to_owned()),
                Entity::Other(text.to_owned()),
            ),
        };
        Self {
            text: text.to_owned(),
            entity,
            action,
        }
    }

    /// The topic as sent.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The origin (`ContentManagement`), when the topic names one.
    #[must_use]
    pub fn origin(&self) -> Option<&str> {
        let mut parts = self.text.rsplitn(3, '.');
        parts.nth(2)
    }

    /// The kind of thing: `Entry`, `Asset`, `AppInstallation`, ...
    #[must_use]
    pub fn entity(&self) -> &Entity {
        &self.entity
    }

    /// What happened: `publish`, `save`, `delete`, ...
    #[must_use]
    pub fn action(&self) -> &Action {
        &self.action
    }

    /// Whether this is `entity.action`, whatever the origin.
    #[must_use]
    pub fn is(&self, entity: Entity, action: Action) -> bool {
        self.entity == entity && self.action == action
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Topic").field(&self.text).finish()
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<&str> for Topic {
    fn from(text: &str) -> Self {
        Self::parse(text)
    }
}

impl std::str::FromStr for Topic {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(text))
    }
}

impl PartialEq<str> for Topic {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for Topic {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

string_serde!(Topic);
