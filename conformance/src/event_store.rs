//! The conformance suite every [`EventStore`] backend passes.
//!
//! Each check is a `pub async fn` taking a factory that produces a fresh, empty store, and panics
//! with a message naming the broken guarantee. [`event_store_conformance!`](crate::event_store_conformance)
//! expands to one `#[tokio::test]` per check, so a backend's test file is one line:
//!
//! ```ignore
//! composable_conformance::event_store_conformance!(|| async { composable::event_store::InMemoryEventStore::new() });
//! ```
//!
//! `read_all` may lag behind appends: a gap-safe store holds committed events back while an
//! older transaction of any client may still commit a lower position. The checks therefore read
//! the global log up to the store's `head` with [`read_all_to_head`], which waits (up to 30 s)
//! for it to get there.
//!
//! The generated tests run on tokio's multi-threaded runtime, so the crate using the macro needs
//! `tokio` (features `macros`, `rt-multi-thread`) among its dev-dependencies.

use std::future::Future;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use futures::TryStreamExt;
use uuid::Uuid;

use composable::envelope::{EventMetadata, NewEvent, RecordedEvent, Snapshot, StoredEvent};
use composable::event_store::{AppendResult, EventStore, EventStoreError, StreamPart};
use composable::stream::{ExpectedVersion, Position, StreamId, Version};
use composable::testing::read_all_to_head;
use composable::trace::TraceContext;

/// Expands to one `#[tokio::test]` per conformance check, each calling the check with the given
/// factory (an expression evaluating to `impl Fn() -> impl Future<Output = impl EventStore>`).
#[macro_export]
macro_rules! event_store_conformance {
    ($factory:expr) => {
        $crate::event_store_conformance!(@tests $factory;
            append_and_read_round_trip_preserves_every_field,
            expected_version_any_appends_at_any_version,
            expected_version_no_stream_only_creates,
            expected_version_exact_conflicts_with_the_actual_version,
            empty_appends_are_refused,
            a_retried_append_is_idempotent,
            an_id_stored_elsewhere_is_a_duplicate,
            a_partially_stored_append_is_a_duplicate,
            a_repeated_id_within_one_append_is_refused,
            read_stream_yields_events_after_a_version,
            read_stream_with_lends_what_read_stream_returns,
            a_stream_is_read_from_its_snapshot_of_the_schema_and_format_asked_for,
            read_all_pages_across_streams,
            stream_version_follows_appends,
            snapshots_are_replaced_only_by_newer_ones,
            concurrent_writers_on_one_stream_get_one_winner_per_version,
            concurrent_appends_to_different_streams_are_all_read_once,
            an_event_is_found_by_its_id,
            head_is_the_last_committed_position,
            events_after_a_position_are_counted,
        );
    };
    (@tests $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                $crate::event_store::$check($factory).await;
            }
        )*
    };
}

/// An event whose fields all differ from other events', so a mix-up is visible.
pub fn new_event(tag: u32) -> NewEvent {
    let occurred_at = Utc
        .timestamp_opt(1_700_000_000 + i64::from(tag), 123_456_789)
        .single()
        .unwrap_or_else(Utc::now);
    NewEvent {
        event_id: Uuid::now_v7(),
        name: format!("thing.happened{}", tag % 3),
        version: u16::try_from(tag % 7 + 1).unwrap_or(1),
        format: if tag.is_multiple_of(2) { "bincode2" } else { "json" }.to_owned(),
        payload: format!("payload-{tag}").into_bytes(),
        metadata: EventMetadata {
            // Every other event names the span that appended it: stores keep it or its absence.
            trace: (tag % 2 == 1).then(|| {
                let (mut trace_id, mut span_id) = ([0xab; 16], [0xcd; 8]);
                trace_id[12..].copy_from_slice(&tag.to_be_bytes());
                span_id[4..].copy_from_slice(&tag.to_be_bytes());
                TraceContext::new(trace_id, span_id, tag % 4 == 1)
                    .unwrap_or_else(|| panic!("a valid trace context for {tag}"))
            }),
            ..EventMetadata::caused_by(Uuid::now_v7(), Uuid::now_v7(), occurred_at)
        },
    }
}

/// `count` events tagged from `first`.
pub fn new_events(first: u32, count: u32) -> Vec<NewEvent> {
    (first..first + count).map(new_event).collect()
}

fn stream(name: &str) -> StreamId {
    StreamId::parse(format!("conformance-{name}")).unwrap_or_else(|error| panic!("{error}"))
}

async fn append_ok<S: EventStore>(
    store: &S,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> AppendResult {
    match store.append(stream, expected, events).await {
        Ok(result) => result,
        Err(error) => panic!("append to {stream} at {expected} failed: {error}"),
    }
}

async fn read_stream_vec<S: EventStore>(
    store: &S,
    stream: &StreamId,
    after: Version,
) -> Vec<RecordedEvent> {
    match store.read_stream(stream, after).try_collect().await {
        Ok(events) => events,
        Err(error) => panic!("read_stream({stream}, after {after}) failed: {error}"),
    }
}

async fn read_all_vec<S: EventStore>(
    store: &S,
    after: Position,
    limit: usize,
) -> Vec<RecordedEvent> {
    match store.read_all(after, limit).await {
        Ok(events) => events,
        Err(error) => panic!("read_all(after {after}, limit {limit}) failed: {error}"),
    }
}

/// Reads the whole global log in pages of `page`.
async fn read_everything<S: EventStore>(store: &S, page: usize) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut after = Position::START;
    loop {
        let batch = read_all_vec(store, after, page).await;
        assert!(batch.len() <= page, "read_all returned more than its limit");
        let Some(last) = batch.last() else {
            return all;
        };
        after = last.position;
        all.extend(batch);
    }
}

async fn version_of<S: EventStore>(store: &S, stream: &StreamId) -> Version {
    match store.stream_version(stream).await {
        Ok(version) => version,
        Err(error) => panic!("stream_version({stream}) failed: {error}"),
    }
}

fn assert_same_event(recorded: &RecordedEvent, sent: &NewEvent) {
    assert_eq!(recorded.event_id, sent.event_id, "event id");
    assert_eq!(recorded.name, sent.name, "event name");
    assert_eq!(recorded.version, sent.version, "event version");
    assert_eq!(recorded.format, sent.format, "payload format");
    assert_eq!(recorded.payload, sent.payload, "payload bytes");
    assert_eq!(recorded.metadata, sent.metadata, "metadata");
}

fn assert_conflict(
    result: Result<AppendResult, EventStoreError>,
    on: &StreamId,
    wanted: ExpectedVersion,
    at: Version,
) {
    match result {
        Err(EventStoreError::Conflict { stream, expected, actual }) => {
            assert_eq!(&stream, on, "conflict names the stream");
            assert_eq!(expected, wanted, "conflict carries the expected version");
            assert_eq!(actual, at, "conflict carries the actual version");
        }
        other => panic!("expected a conflict at version {at} on {on}, got {other:?}"),
    }
}

/// Every field of an appended event reads back unchanged, from the stream and the global log;
/// versions count from 1, and an append's events share its transaction and are numbered from 1
/// within it.
pub async fn append_and_read_round_trip_preserves_every_field<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let order = stream("round1");
    let sent = new_events(0, 3);
    let before = Utc::now() - chrono::Duration::minutes(5);
    let result = append_ok(&store, &order, ExpectedVersion::NoStream, sent.clone()).await;
    assert_eq!(result.first_version, Version(1));
    assert_eq!(result.last_version, Version(3));

    let read = read_stream_vec(&store, &order, Version::ZERO).await;
    assert_eq!(read.len(), 3);
    for (index, (recorded, sent)) in read.iter().zip(&sent).enumerate() {
        assert_same_event(recorded, sent);
        assert_eq!(recorded.stream_id, order);
        assert_eq!(recorded.stream_version, Version(index as u64 + 1));
        assert!(recorded.recorded_at >= before, "recorded_at is the commit time");
    }
    let transaction = result.last_position.transaction();
    let positions: Vec<Position> = read.iter().map(|event| event.position).collect();
    assert_eq!(
        positions,
        (1..=3).map(|sequence| Position::new(transaction, sequence)).collect::<Vec<_>>(),
        "one append is one transaction, its events numbered from 1"
    );
    assert_eq!(read[2].position, result.last_position);

    let all = read_all_to_head(&store, Position::START).await;
    assert_eq!(all, read, "the global log holds the same events");

    // One-event appends, which a store may write another way: with a trace (odd tags) and
    // without, with a cause and without.
    let other = stream("round2");
    let mut alone = vec![new_event(3), new_event(4)];
    alone[1].metadata.causation_id = None;
    let second = append_ok(&store, &other, ExpectedVersion::Any, vec![alone[0].clone()]).await;
    assert!(second.last_position > result.last_position);
    assert_eq!(second.first_version, Version(1));
    append_ok(&store, &other, ExpectedVersion::Exact(Version(1)), vec![alone[1].clone()]).await;
    let read = read_stream_vec(&store, &other, Version::ZERO).await;
    assert_eq!(read.len(), 2);
    for (recorded, sent) in read.iter().zip(&alone) {
        assert_same_event(recorded, sent);
    }
}

/// `Any` appends to a new stream and to an existing one.
pub async fn expected_version_any_appends_at_any_version<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let s = stream("any");
    let first = append_ok(&store, &s, ExpectedVersion::Any, new_events(0, 2)).await;
    assert_eq!((first.first_version, first.last_version), (Version(1), Version(2)));
    let second = append_ok(&store, &s, ExpectedVersion::Any, new_events(2, 1)).await;
    assert_eq!((second.first_version, second.last_version), (Version(3), Version(3)));
    assert_eq!(version_of(&store, &s).await, Version(3));
}

/// `NoStream` (and `Exact(0)`) create a stream and conflict once it exists.
pub async fn expected_version_no_stream_only_creates<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let s = stream("nostream");
    append_ok(&store, &s, ExpectedVersion::NoStream, new_events(0, 2)).await;
    let again = store.append(&s, ExpectedVersion::NoStream, new_events(2, 1)).await;
    assert_conflict(again, &s, ExpectedVersion::NoStream, Version(2));
    let zero = store.append(&s, ExpectedVersion::Exact(Version::ZERO), new_events(3, 1)).await;
    assert_conflict(zero, &s, ExpectedVersion::Exact(Version::ZERO), Version(2));

    let fresh = stream("exactzero");
    let created =
        append_ok(&store, &fresh, ExpectedVersion::Exact(Version::ZERO), new_events(4, 1)).await;
    assert_eq!(created.first_version, Version(1));
    assert_eq!(read_all_to_head(&store, Position::START).await.len(), 3);
}

/// `Exact` appends only at that version; a conflict reports the actual version and writes
/// nothing.
pub async fn expected_version_exact_conflicts_with_the_actual_version<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let s = stream("exact");
    let missing = store.append(&s, ExpectedVersion::Exact(Version(2)), new_events(0, 1)).await;
    assert_conflict(missing, &s, ExpectedVersion::Exact(Version(2)), Version::ZERO);

    append_ok(&store, &s, ExpectedVersion::NoStream, new_events(1, 2)).await;
    let next = append_ok(&store, &s, ExpectedVersion::Exact(Version(2)), new_events(3, 2)).await;
    assert_eq!((next.first_version, next.last_version), (Version(3), Version(4)));

    let stale = store.append(&s, ExpectedVersion::Exact(Version(2)), new_events(5, 3)).await;
    assert_conflict(stale, &s, ExpectedVersion::Exact(Version(2)), Version(4));
    let ahead = store.append(&s, ExpectedVersion::Exact(Version(9)), new_events(8, 1)).await;
    assert_conflict(ahead, &s, ExpectedVersion::Exact(Version(9)), Version(4));

    assert_eq!(version_of(&store, &s).await, Version(4));
    assert_eq!(read_all_to_head(&store, Position::START).await.len(), 4);
}

/// An append without events is refused and changes nothing.
pub async fn empty_appends_are_refused<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let s = stream("empty");
    for expected in
        [ExpectedVersion::Any, ExpectedVersion::NoStream, ExpectedVersion::Exact(Version(3))]
    {
        match store.append(&s, expected, Vec::new()).await {
            Err(EventStoreError::EmptyAppend { stream }) => assert_eq!(stream, s),
            other => panic!("expected EmptyAppend, got {other:?}"),
        }
    }
    assert_eq!(version_of(&store, &s).await, Version::ZERO);
    assert!(read_all_vec(&store, Position::START, 10).await.is_empty());
}

/// Appending exactly what was already stored (a retry after a lost response) returns the
/// original result and writes nothing, even after the stream moved on.
pub async fn a_retried_append_is_idempotent<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let s = stream("retry");
    append_ok(&store, &s, ExpectedVersion::NoStream, new_events(0, 1)).await;
    let batch = new_events(1, 3);
    let original = append_ok(&store, &s, ExpectedVersion::Exact(Version(1)), batch.clone()).await;
    let retried = append_ok(&store, &s, ExpectedVersion::Exact(Version(1)), batch.clone()).await;
    assert_eq!(retried, original, "a retry returns the original result");

    append_ok(&store, &s, ExpectedVersion::Exact(Version(4)), new_events(4, 1)).await;
    let late = append_ok(&store, &s, ExpectedVersion::Exact(Version(1)), batch.clone()).await;
    assert_eq!(late, original, "a retry after later appends still returns the original");
    let any = append_ok(&store, &s, ExpectedVersion::Any, batch.clone()).await;
    assert_eq!(any, original, "a retry with `Any` returns the original");

    assert_eq!(version_of(&store, &s).await, Version(5));
    assert_eq!(read_all_to_head(&store, Position::START).await.len(), 5);

    let mut reordered = batch.clone();
    reordered.swap(0, 2);
    let result = store.append(&s, ExpectedVersion::Exact(Version(1)), reordered).await;
    assert!(
        matches!(result, Err(EventStoreError::DuplicateEventId { .. })),
        "the same ids in another order are not a retry: {result:?}"
    );
    let mut changed = batch.clone();
    changed[1].payload = b"something else".to_vec();
    let result = store.append(&s, ExpectedVersion::Exact(Version(1)), changed).await;
    assert!(
        matches!(result, Err(EventStoreError::DuplicateEventId { .. })),
        "the same ids with other content are not a retry: {result:?}"
    );
    let result = store.append(&s, ExpectedVersion::Exact(Version(2)), batch).await;
    assert!(
        matches!(result, Err(EventStoreError::DuplicateEventId { .. })),
        "the same events at another expected version are not a retry: {result:?}"
    );
    assert_eq!(version_of(&store, &s).await, Version(5));
}

/// An event id stored in another stream is refused, naming where it lives.
pub async fn an_id_stored_elsewhere_is_a_duplicate<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let first = stream("dup1");
    let second = stream("dup2");
    let events = new_events(0, 2);
    append_ok(&store, &first, ExpectedVersion::Any, events.clone()).await;
    for expected in [ExpectedVersion::Any, ExpectedVersion::NoStream] {
        match store.append(&second, expected, events.clone()).await {
            Err(EventStoreError::DuplicateEventId { event_id, stream, version }) => {
                assert_eq!(event_id, events[0].event_id);
                assert_eq!(stream, first);
                assert_eq!(version, Version(1));
            }
            other => panic!("expected DuplicateEventId, got {other:?}"),
        }
    }
    assert_eq!(version_of(&store, &second).await, Version::ZERO);
    assert_eq!(read_all_to_head(&store, Position::START).await.len(), 2);
}

/// An append of which only some ids are stored is refused and writes nothing.
pub async fn a_partially_stored_append_is_a_duplicate<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let s = stream("partial");
    let stored = new_events(0, 2);
    append_ok(&store, &s, ExpectedVersion::NoStream, stored.clone()).await;
    let mut overlapping = stored.clone();
    overlapping.push(new_event(2));
    match store.append(&s, ExpectedVersion::NoStream, overlapping).await {
        Err(EventStoreError::DuplicateEventId { event_id, stream, version }) => {
            assert_eq!(event_id, stored[0].event_id);
            assert_eq!(stream, s);
            assert_eq!(version, Version(1));
        }
        other => panic!("expected DuplicateEventId, got {other:?}"),
    }
    let mut tail = vec![new_event(3)];
    tail.push(stored[1].clone());
    let result = store.append(&s, ExpectedVersion::Any, tail).await;
    assert!(
        matches!(result, Err(EventStoreError::DuplicateEventId { event_id, .. }) if event_id == stored[1].event_id),
        "{result:?}"
    );
    assert_eq!(version_of(&store, &s).await, Version(2));
    assert_eq!(read_all_to_head(&store, Position::START).await.len(), 2);
}

/// An append carrying the same id twice is refused and writes nothing.
pub async fn a_repeated_id_within_one_append_is_refused<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let s = stream("repeat");
    let event = new_event(0);
    let result = store
        .append(&s, ExpectedVersion::Any, vec![new_event(1), event.clone(), event.clone()])
        .await;
    match result {
        Err(EventStoreError::DuplicateEventId { event_id, stream, .. }) => {
            assert_eq!(event_id, event.event_id);
            assert_eq!(stream, s);
        }
        other => panic!("expected DuplicateEventId, got {other:?}"),
    }
    assert_eq!(version_of(&store, &s).await, Version::ZERO);
    assert!(read_all_vec(&store, Position::START, 10).await.is_empty());
}

/// `read_stream` yields exactly the events after a version, of that stream only.
pub async fn read_stream_yields_events_after_a_version<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let s = stream("readafter");
    let noise = stream("noise");
    let mut sent = Vec::new();
    for round in 0..5 {
        let batch = new_events(round * 3, 2);
        sent.extend(batch.clone());
        append_ok(&store, &s, ExpectedVersion::Any, batch).await;
        append_ok(&store, &noise, ExpectedVersion::Any, new_events(round * 3 + 2, 1)).await;
    }
    for after in [0u64, 1, 4, 9, 10, 25] {
        let read = read_stream_vec(&store, &s, Version(after)).await;
        let expected: Vec<&NewEvent> = sent.iter().skip(after as usize).collect();
        assert_eq!(read.len(), expected.len(), "events after version {after}");
        for (offset, (recorded, sent)) in read.iter().zip(expected).enumerate() {
            assert_same_event(recorded, sent);
            assert_eq!(recorded.stream_version, Version(after + offset as u64 + 1));
            assert_eq!(recorded.stream_id, s);
        }
    }
    assert!(read_stream_vec(&store, &stream("nothing"), Version::ZERO).await.is_empty());
}

/// What a fold reads of an event, owned: its version, id, name, version, format and payload.
type Folded = (Version, Uuid, String, u16, String, Vec<u8>);

fn folded(event: StoredEvent<'_>) -> Folded {
    (
        event.stream_version,
        event.event_id,
        event.name.to_owned(),
        event.version,
        event.format.to_owned(),
        event.payload.to_vec(),
    )
}

/// `read_stream_with` lends each event after a version, in order, as `read_stream` returns it.
pub async fn read_stream_with_lends_what_read_stream_returns<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let s = stream("lent");
    append_ok(&store, &s, ExpectedVersion::Any, new_events(0, 4)).await;
    append_ok(&store, &stream("lentnoise"), ExpectedVersion::Any, new_events(4, 1)).await;
    append_ok(&store, &s, ExpectedVersion::Any, new_events(5, 3)).await;
    for after in [0u64, 3, 7, 9] {
        let whole = read_stream_vec(&store, &s, Version(after)).await;
        let lent: Vec<Folded> =
            match store.read_stream_with(&s, Version(after), folded).try_collect().await {
                Ok(lent) => lent,
                Err(error) => panic!("read_stream_with({s}, {after}) failed: {error}"),
            };
        let expected: Vec<Folded> = whole.iter().map(|event| folded(event.as_stored())).collect();
        assert_eq!(lent, expected, "events after version {after}");
    }
}

/// `read_stream_from_snapshot` yields the stream's snapshot when it is of the schema and format
/// asked for, then the events after it; otherwise every event.
pub async fn a_stream_is_read_from_its_snapshot_of_the_schema_and_format_asked_for<S, F, Fut>(
    factory: F,
) where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let s = stream("fromsnap");
    append_ok(&store, &s, ExpectedVersion::Any, new_events(0, 6)).await;
    let all: Vec<Folded> = read_stream_vec(&store, &s, Version::ZERO)
        .await
        .iter()
        .map(|e| folded(e.as_stored()))
        .collect();
    let read = |schema: u32, format: &'static str| {
        let store = store.clone();
        let s = s.clone();
        async move {
            let parts: Result<Vec<StreamPart<Folded>>, _> =
                store.read_stream_from_snapshot(&s, schema, format, folded).try_collect().await;
            parts.unwrap_or_else(|error| panic!("read_stream_from_snapshot({s}) failed: {error}"))
        }
    };
    let events =
        |folded: &[Folded]| folded.iter().cloned().map(StreamPart::Event).collect::<Vec<_>>();
    assert_eq!(read(3, "bincode2").await, events(&all), "no snapshot: every event");

    let snapshot = Snapshot {
        stream_id: s.clone(),
        version: Version(4),
        schema_version: 3,
        format: "bincode2".into(),
        state: b"four".to_vec(),
        taken_at: Utc.timestamp_opt(1_700_000_000, 7_000).single().unwrap_or_else(Utc::now),
    };
    save(&store, snapshot.clone()).await;
    let mut expected = vec![StreamPart::Snapshot(snapshot)];
    expected.extend(events(&all[4..]));
    assert_eq!(read(3, "bincode2").await, expected, "the snapshot, then the events after it");
    assert_eq!(read(4, "bincode2").await, events(&all), "another schema is passed over");
    assert_eq!(read(3, "json").await, events(&all), "another format is passed over");
    assert_eq!(read(3, "bincode2").await.len(), 3);
    let empty = stream("fromsnapnothing");
    let parts: Vec<StreamPart<Folded>> =
        match store.read_stream_from_snapshot(&empty, 3, "bincode2", folded).try_collect().await {
            Ok(parts) => parts,
            Err(error) => panic!("read_stream_from_snapshot({empty}) failed: {error}"),
        };
    assert!(parts.is_empty());
}

/// `read_all` pages through every stream's events in position order, honouring limits.
pub async fn read_all_pages_across_streams<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let mut sent = Vec::new();
    for round in 0..7u32 {
        let s = stream(&format!("page{}", round % 3));
        let batch = new_events(round * 10, round % 3 + 1);
        sent.extend(batch.clone());
        append_ok(&store, &s, ExpectedVersion::Any, batch).await;
    }
    assert!(read_all_vec(&store, Position::START, 0).await.is_empty());
    let everything = read_all_to_head(&store, Position::START).await;
    assert_eq!(everything.len(), sent.len());
    assert_eq!(read_all_vec(&store, Position::START, 1000).await, everything);
    for (recorded, sent) in everything.iter().zip(&sent) {
        assert_same_event(recorded, sent);
    }
    assert!(everything.windows(2).all(|w| w[0].position < w[1].position));
    for page in [1, 2, 3, 5, 100] {
        assert_eq!(read_everything(&store, page).await, everything, "pages of {page}");
    }
    let middle = everything[4].position;
    let rest = read_all_vec(&store, middle, 3).await;
    assert_eq!(rest, everything[5..8].to_vec());
    let end = everything[everything.len() - 1].position;
    assert!(read_all_vec(&store, end, 10).await.is_empty());
}

/// `stream_version` is zero for unknown streams and follows appends.
pub async fn stream_version_follows_appends<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let s = stream("version");
    assert_eq!(version_of(&store, &s).await, Version::ZERO);
    append_ok(&store, &s, ExpectedVersion::Any, new_events(0, 3)).await;
    assert_eq!(version_of(&store, &s).await, Version(3));
    append_ok(&store, &s, ExpectedVersion::Exact(Version(3)), new_events(3, 1)).await;
    assert_eq!(version_of(&store, &s).await, Version(4));
    append_ok(&store, &stream("versionother"), ExpectedVersion::Any, new_events(4, 2)).await;
    assert_eq!(version_of(&store, &s).await, Version(4));
}

/// Snapshots round-trip; a save replaces the stored one only when its version is not older.
pub async fn snapshots_are_replaced_only_by_newer_ones<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let s = stream("snap");
    let snapshot = |version: u64, state: &str| Snapshot {
        stream_id: s.clone(),
        version: Version(version),
        schema_version: 3,
        format: "bincode2".into(),
        state: state.as_bytes().to_vec(),
        taken_at: Utc.timestamp_opt(1_700_000_000, 5_000).single().unwrap_or_else(Utc::now),
    };
    assert_eq!(load(&store, &s).await, None);
    save(&store, snapshot(10, "ten")).await;
    assert_eq!(load(&store, &s).await, Some(snapshot(10, "ten")));
    save(&store, snapshot(5, "five")).await;
    assert_eq!(load(&store, &s).await, Some(snapshot(10, "ten")), "older ignored");
    save(&store, snapshot(10, "ten again")).await;
    assert_eq!(load(&store, &s).await, Some(snapshot(10, "ten again")), "same version replaces");
    let mut newer = snapshot(20, "twenty");
    newer.schema_version = 4;
    newer.format = "json".into();
    save(&store, newer.clone()).await;
    assert_eq!(load(&store, &s).await, Some(newer));
    assert_eq!(load(&store, &stream("snapother")).await, None);
}

async fn save<S: EventStore>(store: &S, snapshot: Snapshot) {
    if let Err(error) = store.save_snapshot(snapshot).await {
        panic!("save_snapshot failed: {error}");
    }
}

async fn load<S: EventStore>(store: &S, stream: &StreamId) -> Option<Snapshot> {
    match store.load_snapshot(stream).await {
        Ok(snapshot) => snapshot,
        Err(error) => panic!("load_snapshot({stream}) failed: {error}"),
    }
}

/// 16 writers race on one stream, each retrying with the version it last saw: each version has
/// exactly one winner, losers get typed conflicts, and nothing is lost or duplicated.
pub async fn concurrent_writers_on_one_stream_get_one_winner_per_version<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    const WRITERS: u32 = 16;
    const EACH: u32 = 5;
    let store = Arc::new(factory().await);
    let s = stream("race");
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            let mut conflicts = 0u32;
            let mut expected = Version::ZERO;
            let mut next = 0;
            while next < EACH {
                let event = new_event(writer * 1000 + next);
                let id = event.event_id;
                match store.append(&s, ExpectedVersion::Exact(expected), vec![event]).await {
                    Ok(result) => {
                        assert_eq!(result.first_version, expected.next());
                        won.push((result.first_version, id));
                        expected = result.last_version;
                        next += 1;
                    }
                    Err(EventStoreError::Conflict { stream, actual, .. }) => {
                        assert_eq!(stream, s);
                        assert!(actual > expected, "a conflict reports a newer version");
                        conflicts += 1;
                        expected = actual;
                    }
                    Err(other) => panic!("writer {writer}: unexpected {other}"),
                }
            }
            (won, conflicts)
        }));
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        let (won, lost) = task.await.unwrap_or_else(|error| panic!("writer panicked: {error}"));
        winners.extend(won);
        conflicts += lost;
    }
    let total = u64::from(WRITERS * EACH);
    assert_eq!(winners.len() as u64, total);
    winners.sort();
    for (index, (version, _)) in winners.iter().enumerate() {
        assert_eq!(*version, Version(index as u64 + 1), "one winner per version");
    }
    assert!(conflicts > 0, "16 racing writers produce conflicts");
    let read = read_stream_vec(&*store, &s, Version::ZERO).await;
    assert_eq!(read.len() as u64, total);
    for (recorded, (version, id)) in read.iter().zip(&winners) {
        assert_eq!(recorded.stream_version, *version, "versions are contiguous");
        assert_eq!(recorded.event_id, *id, "the winner's event is stored");
    }
    assert!(read.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(version_of(&*store, &s).await, Version(total));
}

/// Writers on different streams append concurrently, some with `Any`, while a reader follows the
/// global log: every event is read exactly once, in strictly increasing positions.
pub async fn concurrent_appends_to_different_streams_are_all_read_once<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    const WRITERS: u32 = 16;
    const BATCHES: u32 = 10;
    let store = Arc::new(factory().await);
    let reader = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = Position::START;
            let total = (WRITERS * BATCHES * 2) as usize;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
            while seen.len() < total {
                assert!(tokio::time::Instant::now() < deadline, "reader timed out");
                let batch = read_all_vec(&*store, after, 7).await;
                if batch.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                for event in batch {
                    assert!(event.position > after, "positions strictly increase");
                    after = event.position;
                    seen.push(event);
                }
            }
            seen
        })
    };
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            let s = stream(&format!("parallel{writer}"));
            let mut ids = Vec::new();
            for batch in 0..BATCHES {
                let events = new_events(writer * 100 + batch * 2, 2);
                ids.extend(events.iter().map(|event| event.event_id));
                let expected = if writer.is_multiple_of(2) {
                    ExpectedVersion::Any
                } else {
                    ExpectedVersion::Exact(Version(u64::from(batch) * 2))
                };
                append_ok(&*store, &s, expected, events).await;
            }
            ids
        }));
    }
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.unwrap_or_else(|error| panic!("writer panicked: {error}")));
    }
    let seen = reader.await.unwrap_or_else(|error| panic!("reader panicked: {error}"));
    let mut seen_ids: Vec<Uuid> = seen.iter().map(|event| event.event_id).collect();
    seen_ids.sort();
    written.sort();
    assert_eq!(seen_ids, written, "every event read exactly once");
    assert_eq!(read_everything(&*store, 1000).await, seen, "a later full read agrees");
}

/// `event` finds a stored event by its id, with every field as `read_stream` returns it, right
/// after its append returned; an id never stored is `None`.
pub async fn an_event_is_found_by_its_id<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let first = stream("byid1");
    let second = stream("byid2");
    let events = new_events(0, 3);
    append_ok(&store, &first, ExpectedVersion::NoStream, events.clone()).await;
    append_ok(&store, &second, ExpectedVersion::NoStream, new_events(3, 1)).await;
    let read = read_stream_vec(&store, &first, Version::ZERO).await;
    for (sent, recorded) in events.iter().zip(&read) {
        match store.event(sent.event_id).await {
            Ok(Some(found)) => assert_eq!(&found, recorded, "event {} by id", sent.event_id),
            other => panic!("event {} was appended but `event` returned {other:?}", sent.event_id),
        }
    }
    match store.event(Uuid::now_v7()).await {
        Ok(None) => {}
        other => panic!("an id never stored must be `None`, got {other:?}"),
    }
}

/// `head` is [`Position::START`] for an empty store and the last position an append returned
/// right after it returned; refused appends do not move it, and the log read up to it holds
/// every event.
pub async fn head_is_the_last_committed_position<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let head = || async {
        match store.head().await {
            Ok(head) => head,
            Err(error) => panic!("head() failed: {error}"),
        }
    };
    assert_eq!(head().await, Position::START, "an empty store's head");
    let first =
        append_ok(&store, &stream("head1"), ExpectedVersion::NoStream, new_events(0, 2)).await;
    assert_eq!(head().await, first.last_position);
    let second =
        append_ok(&store, &stream("head2"), ExpectedVersion::NoStream, new_events(2, 3)).await;
    assert_eq!(head().await, second.last_position);
    let refused = store.append(&stream("head1"), ExpectedVersion::NoStream, new_events(5, 1)).await;
    assert!(refused.is_err(), "a stale append must be refused, got {refused:?}");
    assert_eq!(head().await, second.last_position, "a refused append leaves the head");
    let log = read_all_to_head(&store, Position::START).await;
    assert_eq!(log.len(), 5);
    assert_eq!(log.last().map(|event| event.position), Some(second.last_position));
}

/// `count_after` counts the committed events after a position: how far behind a consumer is.
pub async fn events_after_a_position_are_counted<S, F, Fut>(factory: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = factory().await;
    let count = |after| {
        let store = store.clone();
        async move {
            match store.count_after(after).await {
                Ok(count) => count,
                Err(error) => panic!("count_after({after}) failed: {error}"),
            }
        }
    };
    assert_eq!(count(Position::START).await, 0, "an empty store");
    let first =
        append_ok(&store, &stream("count1"), ExpectedVersion::NoStream, new_events(0, 3)).await;
    let second =
        append_ok(&store, &stream("count2"), ExpectedVersion::NoStream, new_events(3, 1200)).await;
    assert_eq!(count(Position::START).await, 1203);
    assert_eq!(count(first.last_position).await, 1200, "after the first append");
    assert_eq!(count(second.last_position).await, 0, "at the head");
    let log = read_all_to_head(&store, Position::START).await;
    assert_eq!(count(log[1].position).await, 1201, "from the middle of an append");
}
