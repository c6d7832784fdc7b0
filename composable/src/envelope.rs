//! What travels with an event: the envelope a store writes and reads back.
//!
//! A [`NewEvent`] is what an append takes; a [`RecordedEvent`] is what a read returns, with the
//! positions the store assigned. Both carry the payload's format, the event's name and version,
//! and [`EventMetadata`], so a row can be decoded years after it was written.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::Codec;
use crate::event::{DecodeError, EventSet};
use crate::stream::{Position, StreamId, Version};
use crate::trace::TraceContext;

/// Correlation, causation, time and trace context of one event.
///
/// The correlation id is shared by every command and event of one business flow (for example
/// one checkout); the causation id is the id of the message that directly caused this event;
/// the trace context names the span that appended it ([`crate::trace`]).
///
/// Stores keep it in a self-describing form (JSON on PostgreSQL): an absent trace context is
/// not written at all, and metadata written before the field existed reads as having none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Shared by every message of one flow.
    pub correlation_id: Uuid,
    /// The message that caused this event, if any.
    pub causation_id: Option<Uuid>,
    /// When the event happened, by the environment's clock.
    pub occurred_at: DateTime<Utc>,
    /// The span that appended the event, when traces are recorded with OpenTelemetry.
    #[serde(
        default,
        rename = "traceparent",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::trace::deserialize_lenient"
    )]
    pub trace: Option<TraceContext>,
}

impl EventMetadata {
    /// Metadata for an event that starts a new flow: a fresh correlation id, no cause.
    pub fn new_flow(occurred_at: DateTime<Utc>) -> Self {
        Self { correlation_id: Uuid::now_v7(), causation_id: None, occurred_at, trace: None }
    }

    /// Metadata for an event caused by the message `causation_id` within the flow
    /// `correlation_id`.
    pub fn caused_by(correlation_id: Uuid, causation_id: Uuid, occurred_at: DateTime<Utc>) -> Self {
        Self { correlation_id, causation_id: Some(causation_id), occurred_at, trace: None }
    }

    /// The same metadata, naming the current span as the one that caused the event (when an
    /// OpenTelemetry layer records spans; see [`TraceContext::current`]).
    #[must_use]
    pub fn in_current_trace(mut self) -> Self {
        self.trace = TraceContext::current();
        self
    }
}

/// An event ready to be appended: encoded, named, versioned, with its id and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique id (UUID v7). Appending an event id that is already stored is a retry, not a new
    /// event.
    pub event_id: Uuid,
    /// The event's stable name.
    pub name: String,
    /// The version of the event's shape.
    pub version: u16,
    /// The [`Codec::format`] of `payload`.
    pub format: String,
    /// The encoded event.
    pub payload: Vec<u8>,
    /// Correlation, causation, time.
    pub metadata: EventMetadata,
}

impl NewEvent {
    /// Encodes `event` with `codec` under a fresh UUID v7.
    ///
    /// # Errors
    /// When the codec cannot encode the payload.
    pub fn encode<E: EventSet, C: Codec>(
        event: &E,
        codec: &C,
        metadata: EventMetadata,
    ) -> Result<Self, crate::codec::CodecError> {
        Ok(Self {
            event_id: Uuid::now_v7(),
            name: event.event_name().to_owned(),
            version: event.event_version(),
            format: codec.format().to_owned(),
            payload: event.encode(codec)?,
            metadata,
        })
    }
}

/// An event as stored, with the positions the store gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Position in the global log.
    pub position: Position,
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its version within the stream (the first event is 1).
    pub stream_version: Version,
    /// Unique id.
    pub event_id: Uuid,
    /// The event's stable name.
    pub name: String,
    /// The version of the event's shape.
    pub version: u16,
    /// The [`Codec::format`] of `payload`.
    pub format: String,
    /// The encoded event.
    pub payload: Vec<u8>,
    /// Correlation, causation, time.
    pub metadata: EventMetadata,
    /// When the store committed it.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// Decodes the payload into the aggregate's event set, upcasting older versions.
    ///
    /// # Errors
    /// [`DecodeError::FormatMismatch`] when the row was written in another format than
    /// `codec`'s, and the errors of [`EventSet::decode`].
    pub fn decode<E: EventSet, C: Codec>(&self, codec: &C) -> Result<E, DecodeError> {
        self.as_stored().decode(codec)
    }

    /// The parts of the event a fold reads, borrowed.
    pub fn as_stored(&self) -> StoredEvent<'_> {
        StoredEvent {
            stream_version: self.stream_version,
            event_id: self.event_id,
            name: &self.name,
            version: self.version,
            format: &self.format,
            payload: &self.payload,
        }
    }
}

/// What rebuilding a state reads of a stored event — its place in the stream, its id, its name,
/// version and format, and its payload — borrowed from wherever the store holds it. A store
/// hands these out from [`EventStore::read_stream_with`](crate::EventStore::read_stream_with)
/// without building the whole envelope: no metadata, no global position, no copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredEvent<'a> {
    /// Its version within the stream (the first event is 1).
    pub stream_version: Version,
    /// Unique id.
    pub event_id: Uuid,
    /// The event's stable name.
    pub name: &'a str,
    /// The version of the event's shape.
    pub version: u16,
    /// The [`Codec::format`] of `payload`.
    pub format: &'a str,
    /// The encoded event.
    pub payload: &'a [u8],
}

impl StoredEvent<'_> {
    /// Decodes the payload into the aggregate's event set, upcasting older versions.
    ///
    /// # Errors
    /// [`DecodeError::FormatMismatch`] when the row was written in another format than
    /// `codec`'s, and the errors of [`EventSet::decode`].
    pub fn decode<E: EventSet, C: Codec>(&self, codec: &C) -> Result<E, DecodeError> {
        if self.format != codec.format() {
            return Err(DecodeError::FormatMismatch {
                expected: codec.format(),
                found: self.format.to_owned(),
            });
        }
        E::decode(codec, self.name, self.version, self.payload)
    }
}

/// A saved aggregate state: the state after `version`, encoded with `format`, in the state's
/// schema `schema_version`. A snapshot whose schema version differs from the code's is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream the state was folded from.
    pub stream_id: StreamId,
    /// The version of the last event folded into the state.
    pub version: Version,
    /// The state type's schema version when the snapshot was taken.
    pub schema_version: u32,
    /// The [`Codec::format`] of `state`.
    pub format: String,
    /// The encoded state.
    pub state: Vec<u8>,
    /// When the snapshot was taken.
    pub taken_at: DateTime<Utc>,
}
