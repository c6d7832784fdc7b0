//! What a saga instance records in its own stream: the inputs it accepted, in order.
//!
//! Replaying these records through the saga's handlers rebuilds the instance: its state, the
//! steps it completed, the timer it armed, and the ids it has already processed.

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::{Codec, CodecError};
use crate::envelope::{EventMetadata, RecordedEvent};
use crate::event::{DecodeError, EventSet};
use crate::stream::{Position, StreamId, StreamIdError, Version};
use crate::trace::TraceContext;

/// An event the instance handled, with its payload as stored, so replay decodes it again, and
/// (from version 2) where it came from, so replay hands handlers the same envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Handled {
    pub(crate) step: String,
    pub(crate) event_id: Uuid,
    pub(crate) name: String,
    pub(crate) version: u16,
    pub(crate) format: String,
    pub(crate) payload: Vec<u8>,
    /// The timeout armed after the step's commands went out.
    pub(crate) timer: Option<Uuid>,
    /// `None` in records written before version 2. Boxed: records are moved around whole, and
    /// most are not `Handled`.
    pub(crate) origin: Option<Box<Origin>>,
}

impl Handled {
    /// Step `step` took `event`; no timer armed yet.
    pub(crate) fn of(step: &str, event: &RecordedEvent) -> Self {
        Self {
            step: step.to_owned(),
            event_id: event.event_id,
            name: event.name.clone(),
            version: event.version,
            format: event.format.clone(),
            payload: event.payload.clone(),
            timer: None,
            origin: Origin::of(event).map(Box::new),
        }
    }
}

/// Version 1 of [`Handled`]: no origin.
#[derive(Deserialize)]
struct HandledV1 {
    step: String,
    event_id: Uuid,
    name: String,
    version: u16,
    format: String,
    payload: Vec<u8>,
    timer: Option<Uuid>,
}

impl From<HandledV1> for Handled {
    fn from(v1: HandledV1) -> Self {
        let HandledV1 { step, event_id, name, version, format, payload, timer } = v1;
        Self { step, event_id, name, version, format, payload, timer, origin: None }
    }
}

/// The envelope of a handled event, less what [`Handled`] holds already. Times are whole
/// nanoseconds since the epoch, the trace context its `traceparent` text: every field reads
/// back exactly under any codec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Origin {
    pub(crate) position: Position,
    pub(crate) stream_id: String,
    pub(crate) stream_version: Version,
    pub(crate) correlation_id: Uuid,
    pub(crate) causation_id: Option<Uuid>,
    pub(crate) occurred_at_ns: i64,
    pub(crate) recorded_at_ns: i64,
    pub(crate) traceparent: Option<String>,
}

impl Origin {
    /// Where `event` came from; `None` for a time outside what nanoseconds since the epoch hold
    /// (years before 1677 or after 2262), which no store writes.
    pub(crate) fn of(event: &RecordedEvent) -> Option<Self> {
        Some(Self {
            position: event.position,
            stream_id: event.stream_id.as_str().to_owned(),
            stream_version: event.stream_version,
            correlation_id: event.metadata.correlation_id,
            causation_id: event.metadata.causation_id,
            occurred_at_ns: event.metadata.occurred_at.timestamp_nanos_opt()?,
            recorded_at_ns: event.recorded_at.timestamp_nanos_opt()?,
            traceparent: event.metadata.trace.map(|trace| trace.to_string()),
        })
    }

    /// The event `handled` holds, in its envelope again.
    ///
    /// # Errors
    /// When the stored stream id is not one (a corrupt record).
    pub(crate) fn envelope(&self, handled: &Handled) -> Result<RecordedEvent, StreamIdError> {
        Ok(RecordedEvent {
            position: self.position,
            stream_id: StreamId::parse(self.stream_id.clone())?,
            stream_version: self.stream_version,
            event_id: handled.event_id,
            name: handled.name.clone(),
            version: handled.version,
            format: handled.format.clone(),
            payload: handled.payload.clone(),
            metadata: EventMetadata {
                correlation_id: self.correlation_id,
                causation_id: self.causation_id,
                occurred_at: DateTime::from_timestamp_nanos(self.occurred_at_ns),
                trace: self
                    .traceparent
                    .as_deref()
                    .and_then(|text| TraceContext::lenient(text.as_bytes())),
            },
            recorded_at: DateTime::from_timestamp_nanos(self.recorded_at_ns),
        })
    }
}

/// The step failed: its handler said so, or one of its commands was rejected. The
/// compensations were dispatched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Failed {
    pub(crate) step: String,
    pub(crate) reason: String,
}

/// The step's timeout fired. The timeout's commands and the compensations were dispatched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TimedOut {
    pub(crate) step: String,
    pub(crate) timer_id: Uuid,
}

/// The saga runner's own events.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SagaRecord {
    Handled(Handled),
    Failed(Failed),
    TimedOut(TimedOut),
}

const HANDLED: &str = "saga.handled";
const FAILED: &str = "saga.failed";
const TIMED_OUT: &str = "saga.timed_out";
/// The newest version of `saga.handled`: 2 keeps the event's origin.
const HANDLED_VERSION: u16 = 2;

impl EventSet for SagaRecord {
    const NAMES: &'static [&'static str] = &[HANDLED, FAILED, TIMED_OUT];

    fn event_name(&self) -> &'static str {
        match self {
            Self::Handled(_) => HANDLED,
            Self::Failed(_) => FAILED,
            Self::TimedOut(_) => TIMED_OUT,
        }
    }

    fn event_version(&self) -> u16 {
        match self {
            Self::Handled(_) => HANDLED_VERSION,
            Self::Failed(_) | Self::TimedOut(_) => 1,
        }
    }

    fn encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError> {
        match self {
            Self::Handled(record) => codec.encode(record),
            Self::Failed(record) => codec.encode(record),
            Self::TimedOut(record) => codec.encode(record),
        }
    }

    fn decode<C: Codec>(
        codec: &C,
        name: &str,
        version: u16,
        bytes: &[u8],
    ) -> Result<Self, DecodeError> {
        let Some(&name) = Self::NAMES.iter().find(|known| **known == name) else {
            return Err(DecodeError::UnknownEvent { name: name.to_owned(), expected: Self::NAMES });
        };
        let newest = if name == HANDLED { HANDLED_VERSION } else { 1 };
        if version > newest {
            return Err(DecodeError::FutureVersion { name, version, newest });
        }
        if version == 0 {
            return Err(DecodeError::UnknownVersion { name, version, newest });
        }
        let payload = |source| DecodeError::Payload { name, version, source };
        match name {
            HANDLED if version == 1 => {
                codec.decode::<HandledV1>(bytes).map(|v1| Self::Handled(v1.into())).map_err(payload)
            }
            HANDLED => codec.decode(bytes).map(Self::Handled).map_err(payload),
            FAILED => codec.decode(bytes).map(Self::Failed).map_err(payload),
            _ => codec.decode(bytes).map(Self::TimedOut).map_err(payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bincode;

    #[test]
    fn a_handled_record_gives_back_its_events_envelope_exactly() {
        let occurred_at = DateTime::from_timestamp_nanos(1_700_000_000_123_456_789);
        let event = RecordedEvent {
            position: Position::new(42, 3),
            stream_id: StreamId::parse("account-ann").unwrap(),
            stream_version: Version(7),
            event_id: Uuid::now_v7(),
            name: "account.deposited".into(),
            version: 1,
            format: "bincode2".into(),
            payload: vec![1, 2, 3],
            metadata: EventMetadata {
                correlation_id: Uuid::now_v7(),
                causation_id: Some(Uuid::now_v7()),
                occurred_at,
                trace: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().ok(),
            },
            recorded_at: DateTime::from_timestamp_nanos(1_700_000_000_987_654_321),
        };
        let record = SagaRecord::Handled(Handled::of("deposited", &event));
        assert_eq!(record.event_version(), 2);
        let bytes = record.encode(&Bincode).unwrap();
        let SagaRecord::Handled(back) = SagaRecord::decode(&Bincode, HANDLED, 2, &bytes).unwrap()
        else {
            panic!("a handled record");
        };
        let origin = back.origin.as_ref().expect("version 2 keeps the origin");
        assert_eq!(origin.envelope(&back).unwrap(), event);
    }

    #[test]
    fn records_round_trip_by_name() {
        let record =
            SagaRecord::TimedOut(TimedOut { step: "pay".into(), timer_id: Uuid::now_v7() });
        let bytes = record.encode(&Bincode).unwrap();
        let back = SagaRecord::decode(&Bincode, record.event_name(), 1, &bytes).unwrap();
        assert_eq!(back, record);
        assert!(matches!(
            SagaRecord::decode(&Bincode, "saga.other", 1, &bytes),
            Err(DecodeError::UnknownEvent { .. })
        ));
        assert!(matches!(
            SagaRecord::decode(&Bincode, TIMED_OUT, 2, &bytes),
            Err(DecodeError::FutureVersion { .. })
        ));
    }
}
