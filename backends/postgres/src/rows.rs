//! Rows back into envelopes. Nothing read from the database is trusted: a value the envelope
//! cannot hold is a [`EventStoreError::Corrupt`] naming the row's position, never a panic.

use chrono::{DateTime, Utc};
use composable::envelope::Snapshot;
use composable::event_store::EventStoreError;
use composable::{
    EventMetadata, NewEvent, Position, RecordedEvent, StreamId, Version, envelope::StoredEvent,
    trace::TraceContext,
};
use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::postgres::{PgRow, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::query::Query;
use sqlx::{Decode, Postgres, Row, Type};
use uuid::Uuid;

/// The columns [`recorded_event`] reads, in a form every event query selects.
pub(crate) const EVENT_COLUMNS: &str = "position, stream_id, stream_version, event_id, \
     event_name, event_version, payload_format, payload, correlation_id, causation_id, \
     occurred_at_ns, traceparent, recorded_at, transaction_id";

/// Where a row whose metadata could not be converted to typed columns keeps its document.
const METADATA_DOCUMENTS: &str = "events_metadata_documents";

/// The events of one append (or one group) as the columns an insert binds, one array per
/// column, borrowing from the events: the one place an event becomes a row.
pub(crate) struct EventColumns<'e> {
    ids: Vec<Uuid>,
    names: Vec<&'e str>,
    versions: Vec<i32>,
    formats: Vec<&'e str>,
    payloads: Vec<&'e [u8]>,
    correlation_ids: Vec<Uuid>,
    causation_ids: Vec<Option<Uuid>>,
    occurred_at_ns: Vec<i64>,
    traceparents: Vec<Option<String>>,
}

/// A time the `occurred_at_ns` column cannot hold.
#[derive(Debug, thiserror::Error)]
#[error(
    "occurred_at {0} is outside the years 1677 to 2262, the times nanoseconds since 1970 in \
     64 bits can hold"
)]
pub(crate) struct OccurredOutOfRange(DateTime<Utc>);

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

impl<'e> EventColumns<'e> {
    pub(crate) fn of(
        events: impl ExactSizeIterator<Item = &'e NewEvent>,
    ) -> Result<Self, EventStoreError> {
        let count = events.len();
        let mut columns = Self {
            ids: Vec::with_capacity(count),
            names: Vec::with_capacity(count),
            versions: Vec::with_capacity(count),
            formats: Vec::with_capacity(count),
            payloads: Vec::with_capacity(count),
            correlation_ids: Vec::with_capacity(count),
            causation_ids: Vec::with_capacity(count),
            occurred_at_ns: Vec::with_capacity(count),
            traceparents: Vec::with_capacity(count),
        };
        for event in events {
            let EventMetadata { correlation_id, causation_id, occurred_at, trace } =
                &event.metadata;
            let nanos =
                occurred_at.timestamp_nanos_opt().ok_or_else(|| EventStoreError::Backend {
                    operation: "encode event metadata",
                    source: Box::new(OccurredOutOfRange(*occurred_at)),
                })?;
            columns.ids.push(event.event_id);
            columns.names.push(&event.name);
            columns.versions.push(i32::from(event.version));
            columns.formats.push(&event.format);
            columns.payloads.push(&event.payload);
            columns.correlation_ids.push(*correlation_id);
            columns.causation_ids.push(*causation_id);
            columns.occurred_at_ns.push(nanos);
            columns.traceparents.push(trace.map(|trace| trace.to_string()));
        }
        Ok(columns)
    }

    /// Binds the nine columns as arrays, in the order the insert statements unnest them: id,
    /// name, version, format, payload, correlation id, causation id, time, trace.
    pub(crate) fn bind_arrays<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.ids)
            .bind(&self.names)
            .bind(&self.versions)
            .bind(&self.formats)
            .bind(&self.payloads)
            .bind(&self.correlation_ids)
            .bind(&self.causation_ids)
            .bind(&self.occurred_at_ns)
            .bind(&self.traceparents)
    }

    /// Binds the nine values of the first event (of an append of one), in the same order.
    pub(crate) fn bind_first<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(self.ids.first())
            .bind(self.names.first())
            .bind(self.versions.first())
            .bind(self.formats.first())
            .bind(self.payloads.first())
            .bind(self.correlation_ids.first())
            .bind(self.causation_ids.first().copied().flatten())
            .bind(self.occurred_at_ns.first())
            .bind(self.traceparents.first().and_then(Option::as_deref))
    }
}

/// A transaction id (`xid8`), read in its binary form: an unsigned 64-bit integer. Reading it
/// this way spares every event row a conversion to text on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Xid8(pub(crate) u64);

impl Type<Postgres> for Xid8 {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("xid8")
    }
}

impl<'r> Decode<'r, Postgres> for Xid8 {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => {
                let bytes: [u8; 8] = value.as_bytes()?.try_into()?;
                Ok(Self(u64::from_be_bytes(bytes)))
            }
            PgValueFormat::Text => Ok(Self(value.as_str()?.parse()?)),
        }
    }
}

/// The columns [`stored_event`] reads, first in every query that folds a stream.
pub(crate) const STORED_EVENT_COLUMNS: &str =
    "stream_version, event_id, event_name, event_version, payload_format, payload";

/// Decodes the columns [`STORED_EVENT_COLUMNS`] of a row of `stream`, borrowing from the row.
pub(crate) fn stored_event<'r>(
    row: &'r PgRow,
    stream: &StreamId,
) -> Result<StoredEvent<'r>, EventStoreError> {
    let at = Position::START;
    let bad = |what: String| corrupt(at, format!("stream `{stream}`: {what}"));
    let raw_version: i64 = column(row, 0, "stream_version", at)?;
    let stream_version = u64::try_from(raw_version)
        .ok()
        .filter(|&version| version > 0)
        .map(Version)
        .ok_or_else(|| bad(format!("stream version {raw_version}")))?;
    let raw_event_version: i32 = column(row, 3, "event_version", at)?;
    let version = u16::try_from(raw_event_version).map_err(|_| {
        bad(format!("event version {raw_event_version} at version {stream_version}"))
    })?;
    let format: &str = column(row, 4, "payload_format", at)?;
    if format.is_empty() {
        return Err(bad(format!("empty payload format at version {stream_version}")));
    }
    Ok(StoredEvent {
        stream_version,
        event_id: column(row, 1, "event_id", at)?,
        name: column(row, 2, "event_name", at)?,
        version,
        format,
        payload: column(row, 5, "payload", at)?,
    })
}

/// The columns [`snapshot`] reads.
pub(crate) const SNAPSHOT_COLUMNS: &str =
    "stream_id, version, schema_version, payload_format, state, taken_at";

/// Reads column `index` (named `name` in errors) of an event or snapshot row.
fn column<'r, T>(
    row: &'r PgRow,
    index: usize,
    name: &str,
    position: Position,
) -> Result<T, EventStoreError>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(index).map_err(|error| EventStoreError::Corrupt {
        position,
        reason: format!("column `{name}`: {error}"),
    })
}

fn corrupt(position: Position, reason: String) -> EventStoreError {
    EventStoreError::Corrupt { position, reason }
}

/// An event's position from its writer's transaction id and its sequence number, both of which
/// are positive for every stored event; `what` names the value in the error otherwise. The
/// transaction id comes as `xid8` (unsigned) or as `bigint` (signed), hence the wide type.
pub(crate) fn event_position(
    transaction: i128,
    sequence: i64,
    what: impl FnOnce() -> String,
) -> Result<Position, EventStoreError> {
    match (u64::try_from(transaction), u64::try_from(sequence)) {
        (Ok(transaction), Ok(sequence)) if transaction > 0 && sequence > 0 => {
            Ok(Position::new(transaction, sequence))
        }
        _ => Err(corrupt(
            Position::START,
            format!("{} has position {sequence} of transaction {transaction}", what()),
        )),
    }
}

/// Decodes one row selected with [`EVENT_COLUMNS`]; columns are read by their index there,
/// which saves a lookup by name per column on long replays.
pub(crate) fn recorded_event(row: &PgRow) -> Result<RecordedEvent, EventStoreError> {
    let raw_position: i64 = column(row, 0, "position", Position::START)?;
    let Xid8(raw_transaction) = column(row, 13, "transaction_id", Position::START)?;
    let position =
        event_position(raw_transaction.into(), raw_position, || "a stored event".to_owned())?;
    let stream_id: String = column(row, 1, "stream_id", position)?;
    let stream_id = StreamId::parse(stream_id)
        .map_err(|error| corrupt(position, format!("stream id: {error}")))?;
    let raw_version: i64 = column(row, 2, "stream_version", position)?;
    let stream_version = u64::try_from(raw_version)
        .ok()
        .filter(|&version| version > 0)
        .map(Version)
        .ok_or_else(|| corrupt(position, format!("stream version {raw_version}")))?;
    let event_id: Uuid = column(row, 3, "event_id", position)?;
    let name: String = column(row, 4, "event_name", position)?;
    let raw_event_version: i32 = column(row, 5, "event_version", position)?;
    let version = u16::try_from(raw_event_version)
        .map_err(|_| corrupt(position, format!("event version {raw_event_version}")))?;
    let format: String = column(row, 6, "payload_format", position)?;
    if format.is_empty() {
        return Err(corrupt(position, "empty payload format".to_owned()));
    }
    let payload: Vec<u8> = column(row, 7, "payload", position)?;
    let unreadable = |what: &str| {
        corrupt(
            position,
            format!("metadata: no {what}; the stored document is in {METADATA_DOCUMENTS}"),
        )
    };
    let correlation_id: Option<Uuid> = column(row, 8, "correlation_id", position)?;
    let causation_id: Option<Uuid> = column(row, 9, "causation_id", position)?;
    let occurred_at_ns: Option<i64> = column(row, 10, "occurred_at_ns", position)?;
    let traceparent: Option<&str> = column(row, 11, "traceparent", position)?;
    let metadata = EventMetadata {
        correlation_id: correlation_id.ok_or_else(|| unreadable("correlation id"))?,
        causation_id,
        occurred_at: DateTime::from_timestamp_nanos(
            occurred_at_ns.ok_or_else(|| unreadable("time it occurred"))?,
        ),
        trace: traceparent.and_then(|text| TraceContext::lenient(text.as_bytes())),
    };
    let recorded_at: DateTime<Utc> = column(row, 12, "recorded_at", position)?;
    Ok(RecordedEvent {
        position,
        stream_id,
        stream_version,
        event_id,
        name,
        version,
        format,
        payload,
        metadata,
        recorded_at,
    })
}

/// The snapshot a row of `READ_FROM_SNAPSHOT` (in the store) carries after the
/// [`STORED_EVENT_COLUMNS`], if it carries one: its version, format, state, schema version and
/// time, in columns 6 to 10.
pub(crate) fn snapshot_after_events(
    row: &PgRow,
    stream: &StreamId,
) -> Result<Option<Snapshot>, EventStoreError> {
    let at = Position::START;
    let bad = |what: String| corrupt(at, format!("snapshot of `{stream}`: {what}"));
    let Some(raw_version) = column::<Option<i64>>(row, 6, "snapshot version", at)? else {
        return Ok(None);
    };
    let version = u64::try_from(raw_version).map_err(|_| bad(format!("version {raw_version}")))?;
    let raw_schema: i64 = column(row, 9, "schema_version", at)?;
    let schema_version =
        u32::try_from(raw_schema).map_err(|_| bad(format!("schema version {raw_schema}")))?;
    Ok(Some(Snapshot {
        stream_id: stream.clone(),
        version: Version(version),
        schema_version,
        format: column(row, 7, "snapshot payload_format", at)?,
        state: column(row, 8, "state", at)?,
        taken_at: column(row, 10, "taken_at", at)?,
    }))
}

/// Decodes one row selected with [`SNAPSHOT_COLUMNS`]. A snapshot has no position, so
/// corruption is reported at [`Position::START`] with the stream named in the reason.
pub(crate) fn snapshot(row: &PgRow) -> Result<Snapshot, EventStoreError> {
    let at = Position::START;
    let stream_id: String = column(row, 0, "stream_id", at)?;
    let bad = |what: String| corrupt(at, format!("snapshot of `{stream_id}`: {what}"));
    let parsed = StreamId::parse(stream_id.clone()).map_err(|error| bad(error.to_string()))?;
    let raw_version: i64 = column(row, 1, "version", at)?;
    let version = u64::try_from(raw_version).map_err(|_| bad(format!("version {raw_version}")))?;
    let raw_schema: i64 = column(row, 2, "schema_version", at)?;
    let schema_version =
        u32::try_from(raw_schema).map_err(|_| bad(format!("schema version {raw_schema}")))?;
    Ok(Snapshot {
        stream_id: parsed,
        version: Version(version),
        schema_version,
        format: column(row, 3, "payload_format", at)?,
        state: column(row, 4, "state", at)?,
        taken_at: column(row, 5, "taken_at", at)?,
    })
}
