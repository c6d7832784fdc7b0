//! What a saga instance records in its own stream: the inputs it accepted, in order.
//!
//! Replaying these records through the saga's handlers rebuilds the instance: its state, the
//! steps it completed, the timer it armed, and the ids it has already processed.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::{Codec, CodecError};
use crate::event::{DecodeError, EventSet};

/// An event the instance handled, with its payload as stored, so replay decodes it again.
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
        1
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
        if version != 1 {
            return Err(DecodeError::FutureVersion { name, version, newest: 1 });
        }
        let payload = |source| DecodeError::Payload { name, version, source };
        match name {
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
