//! What travels on the bus: [`BusMessage`], and how an event is carried in one.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::envelope::{EventMetadata, RecordedEvent};
use crate::stream::{StreamId, Version};

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
    /// The span that caused the message, as a W3C `traceparent`
    /// ([`TraceContext`](crate::trace::TraceContext)): on an event, the span that appended it;
    /// on a command, the span that sent it. Absent when traces are not recorded; a malformed
    /// one is ignored.
    pub const TRACEPARENT: &str = crate::trace::TraceContext::HEADER;
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
/// # Ok::<(), composable::stream::StreamIdError>(())
/// ```
pub fn topic_for(category: &str) -> String {
    format!("{category}-events")
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
        if let Some(trace) = event.metadata.trace {
            headers.push((headers::TRACEPARENT.to_owned(), trace.to_string().into_bytes()));
        }
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
                trace: self.trace_context(),
            },
            recorded_at: self.time_header(headers::RECORDED_AT)?,
        })
    }

    /// The trace context of the span that caused this message, from its
    /// [`headers::TRACEPARENT`] header; `None` when it has none or it cannot be read.
    pub fn trace_context(&self) -> Option<crate::trace::TraceContext> {
        self.header(headers::TRACEPARENT).and_then(crate::trace::TraceContext::lenient)
    }

    /// The id of the event this message carries, from its `event-id` header.
    ///
    /// # Errors
    /// When the header is missing or not a UUID.
    pub fn event_id(&self) -> Result<Uuid, MessageError> {
        self.parse_header(headers::EVENT_ID)
    }

    /// When the event this message carries was committed, from its `recorded-at` header.
    ///
    /// # Errors
    /// When the header is missing or not an RFC 3339 time.
    pub fn recorded_at(&self) -> Result<DateTime<Utc>, MessageError> {
        self.time_header(headers::RECORDED_AT)
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
    fn the_trace_context_travels_as_traceparent_and_a_broken_one_costs_nothing_else() {
        let mut traced = event();
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        traced.metadata.trace = Some(trace.parse().unwrap());
        let message = BusMessage::from_event(&traced);
        assert_eq!(message.header(headers::TRACEPARENT), Some(trace.as_bytes()));
        assert_eq!(message.to_event().unwrap(), traced);
        assert!(BusMessage::from_event(&event()).header(headers::TRACEPARENT).is_none());

        let mut broken = message.clone();
        for (name, value) in &mut broken.headers {
            if name == headers::TRACEPARENT {
                *value = b"00-not-a-trace-\xff".to_vec();
            }
        }
        let read = broken.to_event().unwrap();
        assert_eq!(read.metadata.trace, None);
        assert_eq!(read.event_id, traced.event_id);
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
}
