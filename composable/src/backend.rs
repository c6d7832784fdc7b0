//! For authors of backends: what an event store, a bus or a checkpoint store built outside this
//! crate needs beyond the port's trait. Applications never need this module.
//!
//! * An **event store** applies the crate's one rule for a retried append ([`retried_append`])
//!   and refuses an append that repeats an event id ([`repeated_event_id`]); it wakes the log's
//!   consumers through [`appends`] when events commit (see [`EventStore::appends`](crate::event_store::EventStore::appends)).
//! * A **bus** hands out a [`Subscription`] ([`subscription`]) fed by its consumer loop, which
//!   stops with it ([`abort_on_drop`]); each message goes out as a [`Delivery`] ([`delivery`])
//!   whose [`Acknowledgement`] the loop awaits before it commits past the message or redelivers
//!   it ([`Answer`](crate::bus::Answer)).
//! * Every backend runs the conformance suite of its port (`composable-conformance`), which
//!   holds it to the in-memory twin's semantics.

use std::collections::HashSet;

use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::bus::{Acknowledgement, BusError, BusMessage, Delivery, Subscription};
use crate::envelope::{NewEvent, RecordedEvent};
use crate::event_store::{AppendResult, Appends};
use crate::stream::{ExpectedVersion, StreamId};

/// The original [`AppendResult`] when `records` (the stored events carrying the ids
/// of `events`, in the same order) are exactly what appending `events` to `stream` at `expected`
/// stored — the append is a retry. `None` means any other overlap, which is a
/// [`EventStoreError::DuplicateEventId`](crate::event_store::EventStoreError::DuplicateEventId).
///
/// Every store applies this one rule, and the conformance suite holds them to it.
pub fn retried_append(
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
    records: &[&RecordedEvent],
) -> Option<AppendResult> {
    let first = records.first()?;
    let last = records.last()?;
    if records.len() != events.len() {
        return None;
    }
    let first_version = first.stream_version.get();
    let in_place = records.iter().zip(0u64..).all(|(record, offset)| {
        record.stream_id == *stream && record.stream_version.get() == first_version + offset
    });
    let where_expected = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => first_version == 1,
        ExpectedVersion::Exact(version) => first_version == version.get() + 1,
    };
    let same_content = records.iter().zip(events).all(|(record, event)| {
        record.event_id == event.event_id
            && record.name == event.name
            && record.version == event.version
            && record.format == event.format
            && record.payload == event.payload
            && record.metadata == event.metadata
    });
    (in_place && where_expected && same_content).then_some(AppendResult {
        first_version: first.stream_version,
        last_version: last.stream_version,
        last_position: last.position,
    })
}

/// The first event id that appears twice in one append, with the index of its
/// first occurrence. Stores refuse such an append before writing anything.
pub fn repeated_event_id(events: &[NewEvent]) -> Option<(usize, Uuid)> {
    let mut seen = HashSet::with_capacity(events.len());
    let repeated = events.iter().find(|event| !seen.insert(event.event_id))?;
    let first = events.iter().position(|event| event.event_id == repeated.event_id)?;
    Some((first, repeated.event_id))
}

/// Wake-ups for [`EventStore::appends`](crate::event_store::EventStore::appends): one whenever `receiver`'s value changes (a counter the
/// store bumps after each commit, say).
pub fn appends<T: Send + Sync + 'static>(receiver: watch::Receiver<T>) -> Appends {
    Appends::from_watch(receiver)
}

/// A delivery of `message` from `partition` at `offset`, the `attempt`-th time (from 1), and the
/// [`Acknowledgement`] the consumer loop awaits: it resolves to the subscriber's [`Answer`](crate::bus::Answer), or
/// to [`Answer::Dropped`](crate::bus::Answer::Dropped) when the delivery is dropped unanswered.
pub fn delivery(
    message: BusMessage,
    partition: u32,
    offset: u64,
    attempt: u32,
) -> (Delivery, Acknowledgement) {
    Delivery::new(message, partition, offset, attempt)
}

/// A [`Subscription`] of consumer group `group`, and the sender its consumer loop feeds, holding
/// at most `capacity` deliveries ahead of the subscriber.
pub fn subscription(
    group: impl Into<String>,
    capacity: usize,
) -> (mpsc::Sender<Result<Delivery, BusError>>, Subscription) {
    Subscription::channel(group, capacity)
}

/// `subscription`, aborting `consumer_loop` when it is dropped.
#[must_use]
pub fn abort_on_drop(
    subscription: Subscription,
    consumer_loop: tokio::task::AbortHandle,
) -> Subscription {
    subscription.abort_on_drop(consumer_loop)
}
