//! A projection's dead letters on Redis: events it parked, kept whole beside its data.
//!
//! Two hashes per projection, changed only by the commit script with the rest of a batch:
//! `{prefix}:__dead:{projection}` (field = event id, value = the letter, [`Bincode`]-encoded)
//! and `{prefix}:__parked:{projection}` (field = event id, value = its stream), the second so
//! that finding the parked streams — which the runner does for every batch — reads no letter.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use composable::codec::{Bincode, Codec};
use composable::projection::DeadLetter;
use composable::stream::{Position, StreamId, Version};
use composable::{EventMetadata, RecordedEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::batch::{Kind, RedisBatch};
use crate::error::{RedisReadError, failed};
use crate::store::RedisReadStore;

/// A dead letter as stored: the event whole, why, and when.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    position: Position,
    stream_id: StreamId,
    stream_version: Version,
    event_id: Uuid,
    name: String,
    version: u16,
    format: String,
    payload: Vec<u8>,
    metadata: StoredMetadata,
    recorded_at: DateTime<Utc>,
    reason: String,
    parked_at: DateTime<Utc>,
}

/// The metadata of a dead letter, in the fields it has always been stored with (bincode has no
/// optional fields): a parked event keeps its flow, not the span that appended it.
#[derive(Debug, Serialize, Deserialize)]
struct StoredMetadata {
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    occurred_at: DateTime<Utc>,
}

impl Stored {
    fn of(letter: DeadLetter) -> Self {
        let DeadLetter { projection: _, event, reason, parked_at } = letter;
        Self {
            position: event.position,
            stream_id: event.stream_id,
            stream_version: event.stream_version,
            event_id: event.event_id,
            name: event.name,
            version: event.version,
            format: event.format,
            payload: event.payload,
            metadata: StoredMetadata {
                correlation_id: event.metadata.correlation_id,
                causation_id: event.metadata.causation_id,
                occurred_at: event.metadata.occurred_at,
            },
            recorded_at: event.recorded_at,
            reason,
            parked_at,
        }
    }

    fn into_letter(self, projection: &str) -> DeadLetter {
        DeadLetter {
            projection: projection.to_owned(),
            event: RecordedEvent {
                position: self.position,
                stream_id: self.stream_id,
                stream_version: self.stream_version,
                event_id: self.event_id,
                name: self.name,
                version: self.version,
                format: self.format,
                payload: self.payload,
                metadata: EventMetadata {
                    correlation_id: self.metadata.correlation_id,
                    causation_id: self.metadata.causation_id,
                    occurred_at: self.metadata.occurred_at,
                    trace: None,
                },
                recorded_at: self.recorded_at,
            },
            reason: self.reason,
            parked_at: self.parked_at,
        }
    }
}

/// Queues `letter` in `batch`: its event and its stream.
pub(crate) fn park(batch: &mut RedisBatch, letter: DeadLetter) -> Result<(), RedisReadError> {
    let prefix = batch.store().prefix_keys().clone();
    let letters = prefix.dead_letters(&letter.projection)?;
    let streams = prefix.parked_streams(&letter.projection)?;
    let id = letter.event.event_id.to_string().into_bytes();
    let stream = letter.event.stream_id.as_str().as_bytes().to_vec();
    let bytes = Bincode
        .encode(&Stored::of(letter))
        .map_err(|source| RedisReadError::Codec { key: letters.clone(), source })?;
    batch.push_own(Kind::Park, letters, id.clone(), bytes);
    batch.push_own(Kind::Park, streams, id, stream);
    Ok(())
}

/// Queues taking the dead letter of `event_id` out, when it is there now; the commit refuses
/// the batch ([`RedisReadError::Replayed`]) if it is gone by then.
pub(crate) async fn unpark(
    batch: &mut RedisBatch,
    projection: &str,
    event_id: Uuid,
) -> Result<bool, RedisReadError> {
    let prefix = batch.store().prefix_keys().clone();
    let letters = prefix.dead_letters(projection)?;
    let streams = prefix.parked_streams(projection)?;
    let id = event_id.to_string();
    let mut connection = batch.store().connection().clone();
    let present: bool = redis::cmd("HEXISTS")
        .arg(&letters)
        .arg(&id)
        .query_async(&mut connection)
        .await
        .map_err(failed("look a dead letter up"))?;
    if present {
        batch.replay = true;
        batch.push_own(Kind::Unpark, letters, id.clone().into_bytes(), Vec::new());
        batch.push_own(Kind::HDel, streams, id.into_bytes(), Vec::new());
    }
    Ok(present)
}

/// The dead letters of `projection`, in log order.
pub(crate) async fn dead_letters(
    store: &RedisReadStore,
    projection: &str,
) -> Result<Vec<DeadLetter>, RedisReadError> {
    let letters = store.prefix_keys().dead_letters(projection)?;
    let mut connection = store.connection().clone();
    let stored: Vec<Vec<u8>> = redis::cmd("HVALS")
        .arg(&letters)
        .query_async(&mut connection)
        .await
        .map_err(failed("read the dead letters"))?;
    let mut found = stored
        .iter()
        .map(|bytes| {
            Bincode.decode::<Stored>(bytes).map_err(|source| RedisReadError::Corrupt {
                key: letters.clone(),
                reason: format!("a dead letter does not decode: {source}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    found.sort_by_key(|stored| stored.position);
    Ok(found.into_iter().map(|stored| stored.into_letter(projection)).collect())
}

/// The streams of `projection`'s dead letters.
pub(crate) async fn parked_streams(
    store: &RedisReadStore,
    projection: &str,
) -> Result<BTreeSet<String>, RedisReadError> {
    let streams = store.prefix_keys().parked_streams(projection)?;
    let mut connection = store.connection().clone();
    let names: Vec<String> = redis::cmd("HVALS")
        .arg(&streams)
        .query_async(&mut connection)
        .await
        .map_err(failed("read the parked streams"))?;
    Ok(names.into_iter().collect())
}
