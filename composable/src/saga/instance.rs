//! One saga instance: rebuilt by replaying the records in its stream through the saga's
//! handlers, and moved on by appending new records at the version it was loaded at.

use std::collections::HashSet;

use futures::TryStreamExt;
use uuid::Uuid;

use super::Saga;
use super::error::SagaError;
use super::progress::{Failure, SagaStatus, Summary};
use super::record::{Handled, SagaRecord};
use crate::codec::Codec;
use crate::envelope::{EventMetadata, NewEvent, RecordedEvent};
use crate::event::{DecodeError, EventSet};
use crate::event_store::{EventStore, EventStoreError};
use crate::stream::{ExpectedVersion, StreamId, Version};

/// A saga instance as its records left it.
pub(super) struct Instance<G> {
    pub(super) stream: StreamId,
    pub(super) saga: G,
    pub(super) status: SagaStatus,
    /// The steps whose events arrived, as indexes into [`Saga::STEPS`].
    pub(super) completed: Vec<usize>,
    /// The step waiting for its next event, and its timer.
    pub(super) armed: Option<(usize, Uuid)>,
    /// Why it was compensated.
    pub(super) failure: Option<Failure>,
    /// The ids of the events and timers it handled.
    pub(super) processed: HashSet<Uuid>,
    pub(super) correlation_id: Option<Uuid>,
    pub(super) version: Version,
}

impl<G: Saga> Instance<G> {
    /// Replays `stream` (empty for an instance that never started).
    ///
    /// # Errors
    /// When the store fails or a record, or an event it holds, cannot be decoded.
    pub(super) async fn load<S: EventStore, C: Codec>(
        store: &S,
        codec: &C,
        stream: StreamId,
    ) -> Result<Self, SagaError> {
        let mut instance = Self {
            saga: G::default(),
            status: SagaStatus::Running,
            completed: Vec::new(),
            armed: None,
            failure: None,
            processed: HashSet::new(),
            correlation_id: None,
            version: Version::ZERO,
            stream,
        };
        let stream = instance.stream.clone();
        let mut records = store.read_stream(&stream, Version::ZERO);
        while let Some(recorded) = records.try_next().await.map_err(SagaError::Store)? {
            let record: SagaRecord =
                recorded.decode(codec).map_err(|source| SagaError::stored(&recorded, source))?;
            instance.correlation_id.get_or_insert(recorded.metadata.correlation_id);
            instance.version = recorded.stream_version;
            match record {
                SagaRecord::Handled(handled) => {
                    let step = step_index::<G>(&instance.stream, &handled.step)?;
                    let event = decode_handled::<G, C>(codec, &recorded, &handled)?;
                    let envelope = if G::STEPS[step].reads_envelope {
                        Some(replayed_envelope(store, &instance.stream, &handled).await?)
                    } else {
                        None
                    };
                    // Replay: the commands went out when the record was written.
                    let _ = instance.saga.handle(&event, envelope.as_ref());
                    instance.processed.insert(handled.event_id);
                    instance.completed.push(step);
                    instance.armed = handled.timer.map(|timer| (step, timer));
                    if G::STEPS[step].end {
                        instance.status = SagaStatus::Completed;
                    }
                }
                SagaRecord::Failed(failed) => {
                    let step = step_index::<G>(&instance.stream, &failed.step)?;
                    instance.status = SagaStatus::Compensated;
                    instance.armed = None;
                    instance.failure =
                        Some(Failure::Failed { step: G::STEPS[step].name, reason: failed.reason });
                }
                SagaRecord::TimedOut(timed_out) => {
                    let step = step_index::<G>(&instance.stream, &timed_out.step)?;
                    let _ = instance.saga.timed_out(step);
                    instance.processed.insert(timed_out.timer_id);
                    instance.status = SagaStatus::Compensated;
                    instance.armed = None;
                    instance.failure = Some(Failure::TimedOut { step: G::STEPS[step].name });
                }
            }
        }
        Ok(instance)
    }

    /// The instance as the runner reports it; `None` when it never started.
    pub(super) fn summary(self) -> Option<Summary<G>> {
        if self.version == Version::ZERO {
            return None;
        }
        Some(Summary {
            completed: self.completed.iter().map(|&step| G::STEPS[step].name).collect(),
            state: self.saga,
            status: self.status,
            failure: self.failure,
            waiting: self.armed.map(|(step, _)| G::STEPS[step].name),
            correlation_id: self.correlation_id,
            version: self.version,
        })
    }

    /// Appends `records` with `metadata`, expecting the version the instance was loaded at.
    ///
    /// # Errors
    /// [`SagaError::Conflict`] when another runner moved the instance on first; an encoding or
    /// store failure.
    pub(super) async fn record<S: EventStore, C: Codec>(
        &self,
        store: &S,
        codec: &C,
        records: Vec<SagaRecord>,
        metadata: &EventMetadata,
    ) -> Result<(), SagaError> {
        let events = records
            .iter()
            .map(|record| {
                NewEvent::encode(record, codec, metadata.clone())
                    .map_err(|source| SagaError::Encode { stream: self.stream.clone(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let expected = ExpectedVersion::Exact(self.version);
        let (count, bytes) = (events.len(), events.iter().map(|event| event.payload.len()).sum());
        match store.append(&self.stream, expected, events).await {
            Ok(_) => {
                crate::metrics::appended(self.stream.category(), count, bytes);
                Ok(())
            }
            Err(EventStoreError::Conflict { actual, .. }) => Err(SagaError::Conflict {
                stream: self.stream.clone(),
                loaded: self.version,
                actual,
            }),
            Err(error) => Err(SagaError::Store(error)),
        }
    }
}

/// The event a `Handled` record holds, decoded again for replay.
fn decode_handled<G: Saga, C: Codec>(
    codec: &C,
    recorded: &RecordedEvent,
    handled: &Handled,
) -> Result<G::Event, SagaError> {
    let decoded = if handled.format == codec.format() {
        G::Event::decode(codec, &handled.name, handled.version, &handled.payload)
    } else {
        Err(DecodeError::FormatMismatch { expected: codec.format(), found: handled.format.clone() })
    };
    decoded.map_err(|source| SagaError::stored(recorded, source))
}

/// The envelope of the event `handled` holds, for a step that reads it: from the record, or,
/// for a record written before records kept it, from the store.
async fn replayed_envelope<S: EventStore>(
    store: &S,
    stream: &StreamId,
    handled: &Handled,
) -> Result<RecordedEvent, SagaError> {
    let lost = |reason: String| SagaError::Envelope {
        stream: stream.clone(),
        event_id: handled.event_id,
        reason,
    };
    if let Some(origin) = &handled.origin {
        return origin.envelope(handled).map_err(|error| lost(error.to_string()));
    }
    match store.event(handled.event_id).await.map_err(SagaError::Store)? {
        Some(event) => Ok(event),
        None => Err(lost(
            "its record holds no envelope (written before records kept them), and the event is \
             not in the saga's store"
                .to_owned(),
        )),
    }
}

/// The index of the step a record names.
pub(super) fn step_index<G: Saga>(stream: &StreamId, name: &str) -> Result<usize, SagaError> {
    G::STEPS
        .iter()
        .position(|step| step.name == name)
        .ok_or_else(|| SagaError::UnknownStep { stream: stream.clone(), step: name.to_owned() })
}
