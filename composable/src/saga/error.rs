//! Why a saga input could not be processed.

use std::time::Duration;

use super::timer::TimerError;
use crate::checkpoint::CheckpointError;
use crate::codec::CodecError;
use crate::consumer::ConsumerError;
use crate::dispatch::DispatchError;
use crate::envelope::RecordedEvent;
use crate::event::DecodeError;
use crate::event_store::EventStoreError;
use crate::runner::StoredEventError;
use crate::stream::{Position, StreamId, StreamIdError, Version};
use uuid::Uuid;

/// Why a saga input could not be processed. Nothing was recorded; processing the same input
/// again (the next delivery, the timer's next claim) is safe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    /// An input event or one of the saga's records could not be decoded.
    #[error(transparent)]
    Decode(Box<StoredEventError>),
    /// A record could not be encoded.
    #[error("cannot encode a record of `{stream}`: {source}")]
    Encode {
        /// The instance's stream.
        stream: StreamId,
        /// What the codec said.
        #[source]
        source: CodecError,
    },
    /// The correlation key does not make a stream id.
    #[error("saga key `{key}` is not a valid stream id: {source}")]
    InvalidKey {
        /// The key read from the event.
        key: String,
        /// Why.
        #[source]
        source: StreamIdError,
    },
    /// A record names a step the saga no longer declares.
    #[error("`{stream}` records step `{step}`, which the saga no longer has")]
    UnknownStep {
        /// The instance's stream.
        stream: StreamId,
        /// The recorded step.
        step: String,
    },
    /// A step reads its event's envelope, and the envelope of an event the instance handled
    /// cannot be rebuilt for replay: its record holds an invalid stream id, or it was written
    /// before records kept envelopes and the event is not in the saga's store (a saga fed from
    /// the bus, on another database).
    #[error("cannot rebuild the envelope of event {event_id} handled by `{stream}`: {reason}")]
    Envelope {
        /// The instance's stream.
        stream: StreamId,
        /// The handled event.
        event_id: Uuid,
        /// Why.
        reason: String,
    },
    /// Another runner recorded progress on the instance first.
    #[error(
        "saga instance `{stream}` changed concurrently: loaded version {loaded}, found {actual}"
    )]
    Conflict {
        /// The instance's stream.
        stream: StreamId,
        /// The version the input was processed on.
        loaded: Version,
        /// The version the store reported.
        actual: Version,
    },
    /// A command could not be delivered (a rejection is not an error: the saga compensates).
    #[error(transparent)]
    Dispatch(DispatchError),
    /// The event store failed.
    #[error(transparent)]
    Store(EventStoreError),
    /// The timer store failed.
    #[error(transparent)]
    Timer(#[from] TimerError),
    /// The runner's read position could not be loaded or saved.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// [`SagaRunner::run_until_idle`](super::SagaRunner::run_until_idle) found events committed that the gap-safe log kept back
    /// for longer than the runner's settle timeout: a transaction older than those commits has
    /// not finished (on PostgreSQL, any write transaction on the cluster).
    #[error(
        "the global log stayed behind its head {head} (read up to {reached}) for {waited:?}: \
         a transaction older than those commits is still running in the event store"
    )]
    Behind {
        /// The last event committed.
        head: Position,
        /// How far the log could be read.
        reached: Position,
        /// How long the runner waited.
        waited: Duration,
    },
}

impl SagaError {
    /// A [`ConsumerError`] of the runner's input as the runner's error.
    pub(super) fn from_consumer(error: ConsumerError<SagaError>) -> Self {
        match error {
            ConsumerError::Store { source, .. } => SagaError::Store(source),
            ConsumerError::Checkpoint { source, .. } => SagaError::Checkpoint(source),
            ConsumerError::Handler { source, .. } => source,
            ConsumerError::Behind { head, reached, waited, .. } => {
                SagaError::Behind { head, reached, waited }
            }
        }
    }

    /// A stored event (or record) of the saga's that did not decode, and where it is.
    pub(super) fn stored(recorded: &RecordedEvent, source: DecodeError) -> Self {
        Self::Decode(Box::new(StoredEventError {
            stream: recorded.stream_id.clone(),
            stream_version: recorded.stream_version,
            event_id: recorded.event_id,
            name: recorded.name.clone(),
            event_version: recorded.version,
            source,
        }))
    }
}
