//! Identities and positions in the event log: which stream an event belongs to, where it sits in
//! that stream, and where it sits in the global log.
//!
//! Every aggregate instance owns one stream, named `{category}-{id}` (for example `order-42`).
//! Appends name the [`ExpectedVersion`] of the stream, which is how optimistic concurrency is
//! expressed: the store refuses the append when the stream moved on in the meantime.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid [`StreamId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    /// The category part was empty.
    #[error("a stream category must not be empty")]
    EmptyCategory,
    /// The category contained `-`, which separates category and id.
    #[error("stream category `{0}` must not contain `-`: it separates the category from the id")]
    DashInCategory(String),
    /// The id part was empty.
    #[error("a stream id must not be empty")]
    EmptyId,
}

/// The identity of one event stream, `{category}-{id}`, for example `order-42`.
///
/// ```
/// use composable::StreamId;
/// let stream = StreamId::new("order", 42)?;
/// assert_eq!(stream.as_str(), "order-42");
/// assert_eq!(stream.category(), "order");
/// assert_eq!(stream.id(), "42");
/// # Ok::<(), composable::stream::StreamIdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

impl StreamId {
    /// Builds `{category}-{id}`.
    ///
    /// # Errors
    /// When the category is empty or contains `-`, or the id is empty.
    pub fn new(category: &str, id: impl fmt::Display) -> Result<Self, StreamIdError> {
        if category.is_empty() {
            return Err(StreamIdError::EmptyCategory);
        }
        if category.contains('-') {
            return Err(StreamIdError::DashInCategory(category.to_owned()));
        }
        let id = id.to_string();
        if id.is_empty() {
            return Err(StreamIdError::EmptyId);
        }
        Ok(Self(format!("{category}-{id}")))
    }

    /// Parses a full stream id such as `order-42`.
    ///
    /// # Errors
    /// When there is no `-`, or either side of the first `-` is empty.
    pub fn parse(value: impl Into<String>) -> Result<Self, StreamIdError> {
        let value = value.into();
        match value.split_once('-') {
            None if value.is_empty() => Err(StreamIdError::EmptyCategory),
            None => Err(StreamIdError::EmptyId),
            Some(("", _)) => Err(StreamIdError::EmptyCategory),
            Some((_, "")) => Err(StreamIdError::EmptyId),
            Some(_) => Ok(Self(value)),
        }
    }

    /// The whole id, `{category}-{id}`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `-`: the aggregate's stream name.
    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or(self.0.as_str(), |(category, _)| category)
    }

    /// The part after the first `-`: the aggregate instance's id.
    pub fn id(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, id)| id)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for StreamId {
    type Error = StreamIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<StreamId> for String {
    fn from(value: StreamId) -> Self {
        value.0
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The version of a stream: how many events it holds. The first event of a stream has version 1;
/// [`Version::ZERO`] is the version of a stream with no events.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version of a stream that holds no events.
    pub const ZERO: Self = Self(0);

    /// The version after this one.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an append expects the stream's current version to be.
///
/// `Exact(Version::ZERO)` and `NoStream` mean the same thing: the stream must hold no events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is: there is no expectation to miss. A store whose
    /// writers race for versions (PostgreSQL) tries again when another writer takes them first,
    /// and reports a [`Conflict`](crate::event_store::EventStoreError::Conflict) only when the append keeps
    /// losing that race (100 attempts there).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version.
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation.
    pub fn admits(self, actual: Version) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual == Version::ZERO,
            Self::Exact(expected) => expected == actual,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(version) => write!(f, "version {version}"),
        }
    }
}

/// A position in the global log, across all streams: the writing transaction, then the event's
/// sequence number within it. Each append is one transaction, and its events are numbered from
/// 1, so an append of `n` events takes `(t, 1)` to `(t, n)`. Positions are ordered by
/// transaction first, so the log a gap-safe reader sees only ever grows at its end.
///
/// On PostgreSQL the transaction is the writer's transaction id (see
/// `docs/adr/0001-postgres-event-store.md`; events stored before its migration 6 keep the
/// sequence numbers the log gave them then, which also count up within a transaction); the
/// in-memory store numbers its appends. A reader keeps the position of the last event it
/// processed and reads after it; [`Position::START`] is "before everything".
///
/// The text form is `transaction.sequence`, which [`FromStr`](std::str::FromStr) reads back:
///
/// ```
/// use composable::Position;
///
/// let position = Position::new(742, 15);
/// assert_eq!(position.to_string(), "742.15");
/// assert_eq!("742.15".parse(), Ok(position));
/// assert!(Position::new(741, 90) < position && position < Position::new(743, 1));
/// assert!("742".parse::<Position>().is_err());
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Position {
    transaction: u64,
    sequence: u64,
}

impl Position {
    /// Before the first event: reading after `START` reads the whole log.
    pub const START: Self = Self::new(0, 0);

    /// The position of the `sequence`th event written by `transaction`.
    pub const fn new(transaction: u64, sequence: u64) -> Self {
        Self { transaction, sequence }
    }

    /// The writing transaction (the first part of the order).
    pub const fn transaction(self) -> u64 {
        self.transaction
    }

    /// The event's sequence number within its transaction (the second part of the order).
    pub const fn sequence(self) -> u64 {
        self.sequence
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.transaction, self.sequence)
    }
}

/// Text that is not a `transaction.sequence` position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a position: expected `transaction.sequence`, two unsigned integers")]
pub struct PositionParseError(String);

impl std::str::FromStr for Position {
    type Err = PositionParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || PositionParseError(text.to_owned());
        let (transaction, sequence) = text.split_once('.').ok_or_else(invalid)?;
        Ok(Self::new(
            transaction.parse().map_err(|_| invalid())?,
            sequence.parse().map_err(|_| invalid())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_split_at_the_first_dash() {
        let stream = StreamId::new("order", "a-b").expect("valid");
        assert_eq!(stream.category(), "order");
        assert_eq!(stream.id(), "a-b");
        assert_eq!(StreamId::parse("order-a-b"), Ok(stream));
    }

    #[test]
    fn invalid_stream_ids_are_typed_errors() {
        assert_eq!(StreamId::new("", 1), Err(StreamIdError::EmptyCategory));
        assert_eq!(StreamId::new("or-der", 1), Err(StreamIdError::DashInCategory("or-der".into())));
        assert_eq!(StreamId::new("order", ""), Err(StreamIdError::EmptyId));
        assert_eq!(StreamId::parse("order"), Err(StreamIdError::EmptyId));
        assert_eq!(StreamId::parse("-1"), Err(StreamIdError::EmptyCategory));
        assert!(decoding_rejects_bad_ids());
    }

    fn decoding_rejects_bad_ids() -> bool {
        let bytes = bincode::serde::encode_to_vec("nodash", bincode::config::standard())
            .expect("encode a str");
        bincode::serde::decode_from_slice::<StreamId, _>(&bytes, bincode::config::standard())
            .is_err()
    }

    #[test]
    fn expected_versions_admit_what_they_say() {
        assert!(ExpectedVersion::Any.admits(Version(7)));
        assert!(ExpectedVersion::NoStream.admits(Version::ZERO));
        assert!(!ExpectedVersion::NoStream.admits(Version(1)));
        assert!(ExpectedVersion::Exact(Version(3)).admits(Version(3)));
        assert!(!ExpectedVersion::Exact(Version(3)).admits(Version(4)));
    }
}
