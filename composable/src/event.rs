//! Events: named, versioned facts, and the per-aggregate set of them.
//!
//! `#[event(name = "...", version = N)]` implements [`Event`] for a struct or enum. The newest
//! version of an event also gets [`VersionedEvent`], which decodes a stored payload of *any*
//! known version, running the upcasters that older versions declared with `upcast = Newer`.
//! `#[aggregate]` gathers the events its `#[apply]` handlers take into one enum implementing
//! [`EventSet`], which is what the stores and the runner encode and decode.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Codec, CodecError};

/// A domain event type with a stable name and version.
///
/// Implemented by `#[event(name = "...", version = N)]`; the name and version are stored with
/// every payload and must never change once events of that shape have been written.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not annotated with `#[event]`",
    note = "annotate the type with `#[composable::event(name = \"...\", version = 1)]`"
)]
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stable name stored with every payload, such as `"order.placed"`.
    const NAME: &'static str;
    /// The version of this shape of the event, starting at 1.
    const VERSION: u16;
}

/// The newest version of an event: decodes a stored payload of any version it knows, running
/// the chain of upcasters that older versions declared.
///
/// Implemented by `#[event]` on every event that has no `upcast = ...`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the newest version of an event",
    note = "handlers (`#[apply]`, `#[step]`, `#[project]`) take the newest version of an event; older versions declare `upcast = Newer` and are converted on load"
)]
pub trait VersionedEvent: Event {
    /// Decodes `bytes`, written as version `version` of this event, into the newest type.
    ///
    /// # Errors
    /// [`DecodeError::FutureVersion`] for a version newer than this type,
    /// [`DecodeError::UnknownVersion`] for an older version no upcaster covers, and
    /// [`DecodeError::Payload`] when the bytes are not a valid payload of that version.
    fn decode_version<C: Codec>(codec: &C, version: u16, bytes: &[u8])
    -> Result<Self, DecodeError>;
}

/// The events of one aggregate, as one enum. Implemented by `#[aggregate]`.
pub trait EventSet: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static {
    /// Every event name this set decodes.
    const NAMES: &'static [&'static str];

    /// The stored name of this event.
    fn event_name(&self) -> &'static str;

    /// The stored version of this event (always the newest, since only newest types are held).
    fn event_version(&self) -> u16;

    /// Encodes the event's payload.
    ///
    /// # Errors
    /// When the codec cannot represent the payload.
    fn encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError>;

    /// Decodes a stored payload by its name and version, upcasting older versions.
    ///
    /// # Errors
    /// [`DecodeError::UnknownEvent`] for a name outside this set; the errors of
    /// [`VersionedEvent::decode_version`] otherwise.
    fn decode<C: Codec>(
        codec: &C,
        name: &str,
        version: u16,
        bytes: &[u8],
    ) -> Result<Self, DecodeError>;
}

/// Converts what a command handler returns into the aggregate's events.
///
/// Implemented for every event of an aggregate (by `#[aggregate]`), for the aggregate's event
/// enum, and for `Vec`s of those.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event of this aggregate",
    label = "a command handler returns this, but no `#[apply]` handler takes it",
    note = "add an `#[apply]` handler taking `&{Self}` to the aggregate, or return the aggregate's event enum"
)]
pub trait IntoEvents<E> {
    /// The events, in the order they are to be appended.
    fn into_events(self) -> Vec<E>;
}

impl<E: EventSet> IntoEvents<E> for E {
    fn into_events(self) -> Vec<E> {
        vec![self]
    }
}

impl<E: EventSet> IntoEvents<E> for Vec<E> {
    fn into_events(self) -> Vec<E> {
        self
    }
}

/// A stored event could not be turned back into a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No event of this name belongs to the set being decoded.
    #[error("unknown event `{name}`: expected one of {expected:?}")]
    UnknownEvent {
        /// The stored name.
        name: String,
        /// The names the set knows.
        expected: &'static [&'static str],
    },
    /// The payload was written by newer code than this.
    #[error(
        "event `{name}` version {version} is newer than this code knows (newest is {newest}): deploy the newer code"
    )]
    FutureVersion {
        /// The stored name.
        name: &'static str,
        /// The stored version.
        version: u16,
        /// The newest version this code knows.
        newest: u16,
    },
    /// An older version that no `upcast` declaration covers.
    #[error(
        "event `{name}` version {version} has no decoder (newest is {newest}): declare it with `#[event(name = \"{name}\", version = {version}, upcast = ...)]`"
    )]
    UnknownVersion {
        /// The stored name.
        name: &'static str,
        /// The stored version.
        version: u16,
        /// The newest version this code knows.
        newest: u16,
    },
    /// The bytes are not a valid payload of the stored name and version.
    #[error("event `{name}` version {version}: {source}")]
    Payload {
        /// The stored name.
        name: &'static str,
        /// The stored version.
        version: u16,
        /// What the codec said.
        #[source]
        source: CodecError,
    },
    /// The payload was written in another format than the codec reading it.
    #[error("payload was written as `{found}` but is being read as `{expected}`")]
    FormatMismatch {
        /// The reading codec's format.
        expected: &'static str,
        /// The stored format.
        found: String,
    },
}

/// Decodes `bytes` as exactly `T`, wrapping codec errors with the event's name and version.
///
/// # Errors
/// [`DecodeError::Payload`] when the codec rejects the bytes.
pub fn decode_payload<T: Event, C: Codec>(codec: &C, bytes: &[u8]) -> Result<T, DecodeError> {
    codec.decode(bytes).map_err(|source| DecodeError::Payload {
        name: T::NAME,
        version: T::VERSION,
        source,
    })
}
