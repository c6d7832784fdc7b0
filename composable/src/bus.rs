//! The event bus: how committed events reach other aggregates, sagas and projections.
//!
//! In the flow of `docs/architecture.md` this is the step after the event store: an append
//! commits events to the store (the outbox), the [`crate::relay::Relay`] reads them back
//! gap-safe and publishes them here, and subscribers in consumer groups receive them as [`Delivery`] values that they
//! acknowledge explicitly. The bus never sees an event that was not committed, and a committed
//! event is never lost to it.
//!
//! # Guarantees
//!
//! * **At-least-once.** [`EventBus::publish`] returns `Ok` only when every message was
//!   acknowledged by the bus. A delivery counts as handled only when [`Delivery::ack`] is called;
//!   a delivery that is nacked, dropped, or whose subscriber dies first is delivered again (to
//!   the same subscriber or, after a rebalance, to another member of its group). Handlers must
//!   therefore be idempotent, or filter with [`Dedupe`] by event id.
//! * **Per-key order.** Messages with the same key (for events: the stream id) go to the same
//!   partition and reach a group's member in publish order.
//! * **Consumer groups.** Every group sees every message; within a group each partition (and so
//!   each key) is owned by one member at a time. Without an explicit group, the group id is
//!   derived from the sorted topic names ([`default_group`]), so the same subscriber code gets
//!   the same group after a restart.
//! * **Poison messages.** A delivery that fails [`RedeliveryPolicy::attempts`] times is
//!   moved to the dead-letter topic ([`RedeliveryPolicy::dead_letter_topic`]) with the error in
//!   its headers, and the subscriber moves on.
//!
//! [`InMemoryBus`] keeps these semantics in memory, deterministically;
//! `composable-kafka` keeps them on a Kafka-protocol broker.
//!
//! # Events on the bus
//!
//! Events of the stream category `order` go to the topic `order-events` ([`topic_for`]), keyed by
//! their stream id, with the envelope in headers ([`headers`]). [`BusMessage::from_event`] and
//! [`BusMessage::to_event`] convert both ways.

mod dedupe;
pub mod memory;
mod namespaced;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::envelope::{EventMetadata, RecordedEvent};
use crate::stream::{StreamId, Version};

pub use dedupe::{Dedupe, DedupeError, Handled};
pub use memory::InMemoryBus;
pub use namespaced::Namespaced;

use crate::BoxError;

/// The names of the headers an event carries on the bus.
pub mod headers {
    /// The event's id (UUID, text): what deduplication keys on.
    pub const EVENT_ID: &str = "event-id";
    /// The event's stable name.
    pub const EVENT_NAME: &str = "event-name";
    /// The version of the event's shape (decimal).
    pub const EVENT_VERSION: &str = "event-version";
    /// The codec format of the payload.
    pub const FORMAT: &str = "event-format";
    /// The event's version within its stream (decimal).
    pub const STREAM_VERSION: &str = "stream-version";
    /// The event's global position in the event store (`transaction.sequence`, see
    /// [`Position`](crate::Position)).
    pub const POSITION: &str = "position";
    /// The flow the event belongs to (UUID, text).
    pub const CORRELATION_ID: &str = "correlation-id";
    /// The message that caused the event (UUID, text); absent when nothing did.
    pub const CAUSATION_ID: &str = "causation-id";
    /// When the event happened (RFC 3339).
    pub const OCCURRED_AT: &str = "occurred-at";
    /// When the store committed it (RFC 3339).
    pub const RECORDED_AT: &str = "recorded-at";
    /// On a dead-lettered message: the last error of its handler.
    pub const DLQ_ERROR: &str = "dlq-error";
    /// On a dead-lettered message: how many times it was delivered.
    pub const DLQ_ATTEMPTS: &str = "dlq-attempts";
    /// On a dead-lettered message: the topic it came from.
    pub const DLQ_TOPIC: &str = "dlq-topic";
    /// On a dead-lettered message: its partition there.
    pub const DLQ_PARTITION: &str = "dlq-partition";
    /// On a dead-lettered message: its offset there.
    pub const DLQ_OFFSET: &str = "dlq-offset";
}

/// The topic the events of a stream category go to: `{category}-events`.
///
/// ```
/// use composable::bus::topic_for;
/// use composable::StreamId;
/// assert_eq!(topic_for("order"), "order-events");
/// assert_eq!(topic_for(StreamId::new("order", 42)?.category()), "order-events");
/// # Ok::<(), composable::StreamIdError>(())
/// ```
pub fn topic_for(category: &str) -> String {
    format!("{category}-events")
}

/// The consumer group used when a subscriber names none: derived from the sorted, deduplicated
/// topic names, so it is the same for the same subscription on every start.
///
/// ```
/// use composable::bus::default_group;
/// assert_eq!(default_group(&["b-events", "a-events"]), default_group(&["a-events", "b-events"]));
/// assert_eq!(default_group(&["order-events"]), "composable.order-events");
/// ```
pub fn default_group(topics: &[&str]) -> String {
    let mut sorted: Vec<&str> = topics.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    format!("composable.{}", sorted.join(","))
}

/// One message on the bus: a payload with a key and headers, bound for a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    /// Where it goes.
    pub topic: String,
    /// The partition key: messages with the same key keep their order.
    pub key: String,
    /// The body, never interpreted by the bus.
    pub payload: Vec<u8>,
    /// Name/value pairs, in order; names may repeat.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl BusMessage {
    /// A message without headers.
    pub fn new(topic: impl Into<String>, key: impl Into<String>, payload: Vec<u8>) -> Self {
        Self { topic: topic.into(), key: key.into(), payload, headers: Vec::new() }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_slice())
    }

    /// The message that carries `event` to [`topic_for`] its stream's category, keyed by its
    /// stream id, with the envelope in [`headers`].
    ///
    /// ```
    /// use composable::bus::{BusMessage, headers};
    /// # use composable::{EventMetadata, Position, RecordedEvent, StreamId, Version};
    /// # let event = RecordedEvent {
    /// #     position: Position::new(3, 7), stream_id: StreamId::new("order", 42)?,
    /// #     stream_version: Version(1), event_id: uuid::Uuid::now_v7(),
    /// #     name: "order.placed".into(), version: 1, format: "json".into(),
    /// #     payload: b"{}".to_vec(), metadata: EventMetadata::new_flow(chrono::Utc::now()),
    /// #     recorded_at: chrono::Utc::now(),
    /// # };
    /// let message = BusMessage::from_event(&event);
    /// assert_eq!((message.topic.as_str(), message.key.as_str()), ("order-events", "order-42"));
    /// assert_eq!(message.header(headers::EVENT_NAME), Some(&b"order.placed"[..]));
    /// assert_eq!(message.to_event()?, event);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_event(event: &RecordedEvent) -> Self {
        let mut headers = vec![
            (headers::EVENT_ID.to_owned(), event.event_id.to_string().into_bytes()),
            (headers::EVENT_NAME.to_owned(), event.name.clone().into_bytes()),
            (headers::EVENT_VERSION.to_owned(), event.version.to_string().into_bytes()),
            (headers::FORMAT.to_owned(), event.format.clone().into_bytes()),
            (headers::STREAM_VERSION.to_owned(), event.stream_version.to_string().into_bytes()),
            (headers::POSITION.to_owned(), event.position.to_string().into_bytes()),
            (
                headers::CORRELATION_ID.to_owned(),
                event.metadata.correlation_id.to_string().into_bytes(),
            ),
        ];
        if let Some(causation) = event.metadata.causation_id {
            headers.push((headers::CAUSATION_ID.to_owned(), causation.to_string().into_bytes()));
        }
        headers.push((
            headers::OCCURRED_AT.to_owned(),
            event.metadata.occurred_at.to_rfc3339().into_bytes(),
        ));
        headers
            .push((headers::RECORDED_AT.to_owned(), event.recorded_at.to_rfc3339().into_bytes()));
        Self {
            topic: topic_for(event.stream_id.category()),
            key: event.stream_id.as_str().to_owned(),
            payload: event.payload.clone(),
            headers,
        }
    }

    /// The event this message carries, read back from its key, headers and payload.
    ///
    /// # Errors
    /// [`MessageError`] naming the missing or malformed header (or key).
    pub fn to_event(&self) -> Result<RecordedEvent, MessageError> {
        Ok(RecordedEvent {
            position: self.parse_header(headers::POSITION)?,
            stream_id: StreamId::parse(self.key.clone()).map_err(|error| {
                MessageError::MalformedKey { key: self.key.clone(), reason: error.to_string() }
            })?,
            stream_version: Version(self.parse_header(headers::STREAM_VERSION)?),
            event_id: self.event_id()?,
            name: self.text_header(headers::EVENT_NAME)?.to_owned(),
            version: self.parse_header(headers::EVENT_VERSION)?,
            format: self.text_header(headers::FORMAT)?.to_owned(),
            payload: self.payload.clone(),
            metadata: EventMetadata {
                correlation_id: self.parse_header(headers::CORRELATION_ID)?,
                causation_id: match self.header(headers::CAUSATION_ID) {
                    None => None,
                    Some(_) => Some(self.parse_header(headers::CAUSATION_ID)?),
                },
                occurred_at: self.time_header(headers::OCCURRED_AT)?,
            },
            recorded_at: self.time_header(headers::RECORDED_AT)?,
        })
    }

    /// The id of the event this message carries, from its `event-id` header.
    ///
    /// # Errors
    /// When the header is missing or not a UUID.
    pub fn event_id(&self) -> Result<Uuid, MessageError> {
        self.parse_header(headers::EVENT_ID)
    }

    /// Header `name` as text: missing or not UTF-8 is a [`MessageError`].
    pub(crate) fn text_header(&self, name: &'static str) -> Result<&str, MessageError> {
        let value = self.header(name).ok_or(MessageError::MissingHeader { name })?;
        std::str::from_utf8(value).map_err(|_| MessageError::MalformedHeader {
            name,
            value: String::from_utf8_lossy(value).into_owned(),
            reason: "not UTF-8".into(),
        })
    }

    /// Header `name` parsed with [`FromStr`]: missing or malformed is a [`MessageError`].
    pub(crate) fn parse_header<T>(&self, name: &'static str) -> Result<T, MessageError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let text = self.text_header(name)?;
        text.parse().map_err(|error: T::Err| MessageError::MalformedHeader {
            name,
            value: text.to_owned(),
            reason: error.to_string(),
        })
    }

    fn time_header(&self, name: &'static str) -> Result<DateTime<Utc>, MessageError> {
        let text = self.text_header(name)?;
        DateTime::parse_from_rfc3339(text).map(|time| time.with_timezone(&Utc)).map_err(|error| {
            MessageError::MalformedHeader {
                name,
                value: text.to_owned(),
                reason: error.to_string(),
            }
        })
    }
}

/// A message could not be read back as an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A header the envelope needs is absent.
    #[error("the message has no `{name}` header")]
    MissingHeader {
        /// The header's name (one of [`headers`]).
        name: &'static str,
    },
    /// A header is present but its value cannot be read.
    #[error("header `{name}` has the malformed value `{value}`: {reason}")]
    MalformedHeader {
        /// The header's name.
        name: &'static str,
        /// Its value (lossily decoded).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not a stream id.
    #[error("message key `{key}` is not a stream id: {reason}")]
    MalformedKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A bus operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The broker could not be reached or did not acknowledge in time; retrying may succeed.
    /// Some messages of a failed publish may have been delivered (at-least-once).
    #[error("event bus unavailable while trying to {operation}: {source}")]
    Unavailable {
        /// What was being done.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The broker refused a message for good (too large, unknown topic, not authorised).
    #[error("the bus refused a message for topic `{topic}`: {source}")]
    Rejected {
        /// The message's topic.
        topic: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// A subscription named no topic, or an invalid one.
    #[error("invalid subscription: {reason}")]
    InvalidSubscription {
        /// What is wrong with it.
        reason: String,
    },
    /// The bus or the subscription was shut down.
    #[error("the event bus is closed")]
    Closed,
    /// The backend failed in a way retrying will not fix.
    #[error("event bus failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

impl BusError {
    /// Whether retrying the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A publish/subscribe bus with consumer groups and explicit acknowledgement.
///
/// See the [module docs](self) for the guarantees every implementation keeps.
///
/// ```
/// use composable::bus::{BusMessage, EventBus, InMemoryBus};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let bus = InMemoryBus::new();
/// let mut subscription = bus.subscribe(Some("billing"), &["order-events"]).await?;
/// bus.publish(vec![BusMessage::new("order-events", "order-1", b"placed".to_vec())]).await?;
/// let delivery = subscription.next().await.expect("open")?;
/// assert_eq!(delivery.message().payload, b"placed");
/// delivery.ack();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `messages`, keeping the order of messages with the same key. Returns `Ok` only
    /// when the bus acknowledged every one of them.
    fn publish(
        &self,
        messages: Vec<BusMessage>,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Joins the consumer `group` (or [`default_group`] of `topics` when `None`) on `topics`.
    ///
    /// A new group starts at the oldest message the bus still holds. The subscription stays
    /// in the group until it is dropped.
    fn subscribe(
        &self,
        group: Option<&str>,
        topics: &[&str],
    ) -> impl Future<Output = Result<Subscription, BusError>> + Send;
}

/// How a handler answered a [`Delivery`]: what the bus's consumer loop waits for before it moves
/// on. Backends receive it through [`Acknowledgement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled: commit past it.
    Ack,
    /// Failed with this error: deliver it again, or dead-letter it after the last attempt.
    Nack(String),
    /// Dropped without an answer (the handler panicked or gave up): treated as a failure.
    Dropped,
}

/// The receiving side of one [`Delivery`]'s acknowledgement, for backends.
#[derive(Debug)]
pub struct Acknowledgement(oneshot::Receiver<Outcome>);

impl Future for Acknowledgement {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        Pin::new(&mut self.0).poll(cx).map(|answer| answer.unwrap_or(Outcome::Dropped))
    }
}

/// One message handed to a subscriber, to be acknowledged with [`ack`](Self::ack) once handled
/// or refused with [`nack`](Self::nack). Dropping it unanswered counts as a failure: the
/// message is delivered again.
#[derive(Debug)]
pub struct Delivery {
    message: BusMessage,
    partition: u32,
    offset: u64,
    attempt: u32,
    reply: Option<oneshot::Sender<Outcome>>,
}

impl Delivery {
    /// A delivery of `message` from `partition` at `offset`, the `attempt`-th time (from 1), and
    /// the acknowledgement its consumer loop awaits. For backends.
    pub fn new(
        message: BusMessage,
        partition: u32,
        offset: u64,
        attempt: u32,
    ) -> (Self, Acknowledgement) {
        let (reply, answer) = oneshot::channel();
        (Self { message, partition, offset, attempt, reply: Some(reply) }, Acknowledgement(answer))
    }

    /// The message.
    pub fn message(&self) -> &BusMessage {
        &self.message
    }

    /// The partition it was read from.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Its offset in that partition.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How many times it has been delivered, this time included (1 the first time).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The event it carries ([`BusMessage::to_event`]).
    ///
    /// # Errors
    /// When its headers do not describe an event.
    pub fn event(&self) -> Result<RecordedEvent, MessageError> {
        self.message.to_event()
    }

    /// Handled: the bus commits past it and will not deliver it to this group again.
    pub fn ack(mut self) {
        self.answer(Outcome::Ack);
    }

    /// Not handled because of `error`: the bus delivers it again after its backoff, or moves it
    /// to the dead-letter topic once it has failed [`RedeliveryPolicy::attempts`] times.
    pub fn nack(mut self, error: impl fmt::Display) {
        self.answer(Outcome::Nack(error.to_string()));
    }

    fn answer(&mut self, outcome: Outcome) {
        if let Some(reply) = self.reply.take() {
            // The consumer loop is gone when the subscription was dropped: nothing to tell.
            let _ = reply.send(outcome);
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.answer(Outcome::Dropped);
    }
}

/// The deliveries of one member of a consumer group, in order; a [`Stream`] too.
///
/// Backends feed it through the sender of [`Subscription::channel`]. Dropping it leaves the
/// group: deliveries not yet acknowledged go to the next owner of their partition.
#[derive(Debug)]
pub struct Subscription {
    deliveries: mpsc::Receiver<Result<Delivery, BusError>>,
    group: String,
    on_drop: Option<tokio::task::AbortHandle>,
}

impl Subscription {
    /// A subscription for `group` and the sender its consumer loop feeds, holding at most
    /// `capacity` deliveries ahead of the subscriber. For backends.
    pub fn channel(
        group: impl Into<String>,
        capacity: usize,
    ) -> (mpsc::Sender<Result<Delivery, BusError>>, Self) {
        let (sender, deliveries) = mpsc::channel(capacity.max(1));
        (sender, Self { deliveries, group: group.into(), on_drop: None })
    }

    /// Aborts `task` (the consumer loop) when the subscription is dropped. For backends.
    #[must_use]
    pub fn abort_on_drop(mut self, task: tokio::task::AbortHandle) -> Self {
        self.on_drop = Some(task);
        self
    }

    /// The consumer group this subscription is a member of.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The next delivery, an error the backend reported (the subscription stays usable), or
    /// `None` once the bus closed it.
    pub async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        self.deliveries.recv().await
    }
}

impl Stream for Subscription {
    type Item = Result<Delivery, BusError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.deliveries.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(task) = self.on_drop.take() {
            task.abort();
        }
    }
}

/// How often a failing delivery is retried, how long between tries (a [`Backoff`]), and where
/// it goes after the last one.
///
/// ```
/// use std::time::Duration;
/// use composable::Backoff;
/// use composable::bus::RedeliveryPolicy;
/// let policy = RedeliveryPolicy::default()
///     .retry(Backoff::exponential(Duration::from_millis(10)).attempts(3));
/// assert_eq!(policy.dead_letter_topic("order-events"), "order-events-dlq");
/// assert_eq!(policy.attempts(), 3);
/// assert_eq!(policy.delay_before(2), Duration::from_millis(10));
/// assert_eq!(policy.delay_before(3), Duration::from_millis(20));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RedeliveryPolicy {
    retry: Backoff,
    dead_letter_suffix: String,
}

impl Default for RedeliveryPolicy {
    /// 5 attempts, 100 ms doubling up to 10 s between them, dead letters to `{topic}-dlq`.
    fn default() -> Self {
        Self {
            retry: Backoff::exponential(Duration::from_millis(100))
                .max_delay(Duration::from_secs(10))
                .attempts(5),
            dead_letter_suffix: "-dlq".into(),
        }
    }
}

impl RedeliveryPolicy {
    /// How many deliveries a message gets (the back-off's attempts; 5 when it sets no limit) and
    /// the waits between them.
    #[must_use]
    pub fn retry(mut self, retry: Backoff) -> Self {
        self.retry = match retry.max_attempts() {
            Some(_) => retry,
            None => retry.attempts(5),
        };
        self
    }

    /// The back-off between deliveries.
    pub fn backoff(&self) -> &Backoff {
        &self.retry
    }

    /// The suffix of dead-letter topics: `{topic}{suffix}`.
    #[must_use]
    pub fn dead_letter_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.dead_letter_suffix = suffix.into();
        self
    }

    /// How many deliveries a message gets before it is dead-lettered.
    pub fn attempts(&self) -> u32 {
        self.retry.max_attempts().unwrap_or(1)
    }

    /// Where messages of `topic` go after their last failed attempt.
    pub fn dead_letter_topic(&self, topic: &str) -> String {
        format!("{topic}{}", self.dead_letter_suffix)
    }

    /// The wait before attempt number `attempt` (2 or more; zero for the first), without
    /// jitter.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        self.retry.delay_before(attempt)
    }

    /// The dead letter for `message`, which failed `attempts` times with `error` at
    /// `partition`/`offset`: the same key, payload and headers, plus the `dlq-*` [`headers`].
    pub fn dead_letter(
        &self,
        message: &BusMessage,
        partition: u32,
        offset: u64,
        attempts: u32,
        error: &str,
    ) -> BusMessage {
        let mut letter = message.clone();
        letter.topic = self.dead_letter_topic(&message.topic);
        letter.headers.extend([
            (headers::DLQ_ERROR.to_owned(), error.as_bytes().to_vec()),
            (headers::DLQ_ATTEMPTS.to_owned(), attempts.to_string().into_bytes()),
            (headers::DLQ_TOPIC.to_owned(), message.topic.clone().into_bytes()),
            (headers::DLQ_PARTITION.to_owned(), partition.to_string().into_bytes()),
            (headers::DLQ_OFFSET.to_owned(), offset.to_string().into_bytes()),
        ]);
        letter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Position;

    fn event() -> RecordedEvent {
        RecordedEvent {
            position: Position::new(4, 9),
            stream_id: StreamId::new("order", "7").unwrap(),
            stream_version: Version(3),
            event_id: Uuid::now_v7(),
            name: "order.placed".into(),
            version: 2,
            format: "bincode".into(),
            payload: vec![1, 2, 3],
            metadata: EventMetadata::caused_by(Uuid::now_v7(), Uuid::now_v7(), Utc::now()),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn an_event_survives_the_round_trip_through_a_message() {
        let event = event();
        let message = BusMessage::from_event(&event);
        assert_eq!(message.topic, "order-events");
        assert_eq!(message.key, "order-7");
        assert_eq!(message.to_event().unwrap(), event);

        let mut no_cause = event.clone();
        no_cause.metadata.causation_id = None;
        let message = BusMessage::from_event(&no_cause);
        assert!(message.header(headers::CAUSATION_ID).is_none());
        assert_eq!(message.to_event().unwrap(), no_cause);
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        let mut message = BusMessage::from_event(&event());
        message.headers.retain(|(name, _)| name != headers::EVENT_NAME);
        assert_eq!(
            message.to_event(),
            Err(MessageError::MissingHeader { name: headers::EVENT_NAME })
        );

        let mut message = BusMessage::from_event(&event());
        for (name, value) in &mut message.headers {
            if name == headers::STREAM_VERSION {
                *value = b"three".to_vec();
            }
        }
        assert!(matches!(
            message.to_event(),
            Err(MessageError::MalformedHeader { name: headers::STREAM_VERSION, ref value, .. })
                if value == "three"
        ));

        let mut message = BusMessage::from_event(&event());
        message.key = "nodash".into();
        assert!(matches!(message.to_event(), Err(MessageError::MalformedKey { .. })));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RedeliveryPolicy::default().retry(
            Backoff::exponential(Duration::from_millis(100)).max_delay(Duration::from_millis(350)),
        );
        let delays: Vec<u128> = (1..=5).map(|n| policy.delay_before(n).as_millis()).collect();
        assert_eq!(delays, [0, 100, 200, 350, 350]);
    }

    #[tokio::test]
    async fn a_dropped_delivery_reports_dropped() {
        let (delivery, answer) = Delivery::new(BusMessage::new("t", "k", vec![]), 0, 0, 1);
        drop(delivery);
        assert_eq!(answer.await, Outcome::Dropped);
        let (delivery, answer) = Delivery::new(BusMessage::new("t", "k", vec![]), 0, 0, 1);
        delivery.nack("boom");
        assert_eq!(answer.await, Outcome::Nack("boom".into()));
    }
}
