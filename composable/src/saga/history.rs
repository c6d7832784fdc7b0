//! A saga instance's stream read as a story, for operators and tools: what it handled, when,
//! where each event came from, and how it failed. [`load`] rebuilds the instance itself.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use uuid::Uuid;

use super::error::SagaError;
use super::instance::Instance;
use super::progress::Summary;
use super::record::SagaRecord;
use super::{Saga, category};
use crate::codec::Codec;
use crate::event_store::EventStore;
use crate::stream::{Position, StreamId, Version};

/// One record of a saga instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The record's version in the instance's stream.
    pub version: Version,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// When it happened by the runner's clock: a timeout armed by this record falls due its
    /// step's `timeout` after this.
    pub occurred_at: DateTime<Utc>,
    /// What it says.
    pub record: Record,
}

/// What a saga instance recorded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Record {
    /// Step `step` took event `event` and dispatched its commands.
    Handled {
        /// The step, as recorded.
        step: String,
        /// The event's stored name and version.
        event: String,
        /// The event's id.
        event_id: Uuid,
        /// The stream the event was appended to and its position in the log; `None` for
        /// records written before records kept the envelope.
        from: Option<(StreamId, Position)>,
        /// Whether the step armed a timeout.
        timeout_armed: bool,
    },
    /// Step `step` failed and the completed steps were compensated.
    Failed {
        /// The step whose event was being handled.
        step: String,
        /// The refusal or the handler's error.
        reason: String,
    },
    /// The timeout armed after step `step` fired and the completed steps were compensated.
    TimedOut {
        /// The step whose timeout fired.
        step: String,
    },
}

/// The stream of saga `G`'s instance `key`.
///
/// # Errors
/// When the key does not make a stream id.
pub fn stream_id<G: Saga>(key: &str) -> Result<StreamId, SagaError> {
    StreamId::new(&category(G::NAME), key)
        .map_err(|source| SagaError::InvalidKey { key: key.to_owned(), source })
}

/// Rebuilds saga `G`'s instance `key` from `store`, written with `codec`; `None` when it never
/// started. [`SagaRunner::load`](super::SagaRunner::load) without a runner.
///
/// # Errors
/// When the key is no stream id, the store fails, or a record cannot be decoded.
pub async fn load<G: Saga, S: EventStore, C: Codec>(
    store: &S,
    codec: &C,
    key: &str,
) -> Result<Option<Summary<G>>, SagaError> {
    Ok(Instance::<G>::load(store, codec, stream_id::<G>(key)?).await?.summary())
}

/// Every record of saga `G`'s instance `key`, oldest first; empty when it never started.
///
/// # Errors
/// When the key is no stream id, the store fails, or a record cannot be decoded.
pub async fn history<G: Saga, S: EventStore, C: Codec>(
    store: &S,
    codec: &C,
    key: &str,
) -> Result<Vec<Entry>, SagaError> {
    let stream = stream_id::<G>(key)?;
    let mut records = store.read_stream(&stream, Version::ZERO);
    let mut entries = Vec::new();
    while let Some(recorded) = records.try_next().await.map_err(SagaError::Store)? {
        let record: SagaRecord =
            recorded.decode(codec).map_err(|source| SagaError::stored(&recorded, source))?;
        let record = match record {
            SagaRecord::Handled(handled) => Record::Handled {
                event: format!("{} v{}", handled.name, handled.version),
                from: handled.origin.as_ref().and_then(|origin| {
                    let stream = StreamId::parse(origin.stream_id.clone()).ok()?;
                    Some((stream, origin.position))
                }),
                timeout_armed: handled.timer.is_some(),
                event_id: handled.event_id,
                step: handled.step,
            },
            SagaRecord::Failed(failed) => {
                Record::Failed { step: failed.step, reason: failed.reason }
            }
            SagaRecord::TimedOut(timed_out) => Record::TimedOut { step: timed_out.step },
        };
        entries.push(Entry {
            version: recorded.stream_version,
            recorded_at: recorded.recorded_at,
            occurred_at: recorded.metadata.occurred_at,
            record,
        });
    }
    Ok(entries)
}
