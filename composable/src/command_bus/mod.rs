//! Commands across processes: a saga (or anything holding a
//! [`Dispatcher`](crate::dispatch::Dispatcher)) in one process, the aggregates' runners
//! in another, the bus between them.
//!
//! In the flow of `docs/architecture.md` this is the `Dispatch(command) → another aggregate's
//! store` arrow when that store lives elsewhere. It is request/reply over the
//! [`EventBus`](crate::bus::EventBus):
//!
//! 1. [`BusDispatcher`] encodes the command ([`CommandCodec`](crate::command::CommandCodec)) and publishes
//!    a [`CommandMessage`] to `{aggregate}-commands` ([`command_topic`]), keyed by the target's
//!    stream id so one instance's commands stay in order, with the command id, the flow's ids
//!    and its own reply topic in [`headers`]. It then waits for the reply with that command id.
//! 2. [`CommandService`] consumes the command topics of the aggregates it hosts in a consumer
//!    group, decodes each command, executes it on the aggregate's
//!    [`AggregateRunner`](crate::AggregateRunner) with the message's command id, publishes a
//!    [`CommandReply`] (accepted, duplicate, rejected or failed) to the reply topic, and only
//!    then acknowledges the delivery.
//! 3. The dispatcher's reply listener (one subscription per dispatcher, demultiplexed by command
//!    id) hands the outcome to the waiting `dispatch`: a rejection is
//!    [`DispatchError::Rejected`](crate::dispatch::DispatchError::Rejected), and a saga compensates
//!    exactly as it does in process; a failure, or no reply in time, is
//!    [`DispatchError::Failed`](crate::dispatch::DispatchError::Failed): the saga records nothing
//!    and handles the input again later.
//!
//! Every delivery along the way is at least once, and that is safe because the command id is
//! stable: a saga derives it from the input that caused the command, so a retry re-sends the
//! same id, and the runner answers a command whose events are already stored as a duplicate
//! instead of deciding it again (see
//! [`AggregateRunner::execute_in`](crate::AggregateRunner::execute_in)). A timeout therefore
//! means "unknown", never "refused": the command may have taken effect, and the retry finds out.
//!
//! `docs/adr/0006-sagas.md` explains the choices.

mod dispatcher;
mod service;

use std::fmt;

use uuid::Uuid;

use crate::bus::{BusMessage, MessageError};
use crate::command::CommandContext;
use crate::trace::TraceContext;

pub use dispatcher::{BusDispatcher, CommandBusError};
pub use service::{CommandService, ServeError};

/// The names of the headers a command and its reply carry on the bus.
pub mod headers {
    /// The command's id (UUID, text): what the reply and the aggregate's deduplication key on.
    pub const COMMAND_ID: &str = "command-id";
    /// The command's stable name ([`CommandCodec::command_name`](crate::command::CommandCodec::command_name)).
    pub const COMMAND_NAME: &str = "command-name";
    /// The target aggregate's stream category.
    pub const AGGREGATE: &str = "aggregate";
    /// The target instance's id.
    pub const AGGREGATE_ID: &str = "aggregate-id";
    /// The codec format of the payload.
    pub const FORMAT: &str = "command-format";
    /// The flow the command belongs to (UUID, text).
    pub const CORRELATION_ID: &str = "correlation-id";
    /// The message that caused the command (UUID, text).
    pub const CAUSATION_ID: &str = "causation-id";
    /// The topic the reply goes to.
    pub const REPLY_TO: &str = "reply-to";
    /// The span that sent the command, as a W3C `traceparent` (the same header as an event's,
    /// [`crate::bus::headers::TRACEPARENT`]).
    pub const TRACEPARENT: &str = crate::bus::headers::TRACEPARENT;
    /// On a reply: `accepted`, `duplicate`, `rejected` or `failed`; the reason of the last two is
    /// the payload (UTF-8).
    pub const OUTCOME: &str = "reply-outcome";
}

/// The topic the commands of a stream category go to: `{category}-commands`.
///
/// ```
/// assert_eq!(composable::command_bus::command_topic("payment"), "payment-commands");
/// ```
pub fn command_topic(category: &str) -> String {
    format!("{category}-commands")
}

/// One command on the bus, as [`BusDispatcher`] sends it and [`CommandService`] receives it.
///
/// ```
/// use composable::command_bus::{CommandMessage, headers};
///
/// let command = CommandMessage {
///     command_id: uuid::Uuid::now_v7(),
///     aggregate: "payment".into(),
///     aggregate_id: "order-7".into(),
///     name: "Charge".into(),
///     format: "bincode2".into(),
///     correlation_id: uuid::Uuid::now_v7(),
///     causation_id: uuid::Uuid::now_v7(),
///     reply_to: "checkout-replies".into(),
///     trace: None,
///     payload: vec![1, 2, 3],
/// };
/// let message = command.to_message();
/// assert_eq!((message.topic.as_str(), message.key.as_str()), ("payment-commands", "payment-order-7"));
/// assert_eq!(message.header(headers::COMMAND_NAME), Some(&b"Charge"[..]));
/// assert_eq!(CommandMessage::from_message(&message)?, command);
/// assert_eq!(command.context().command_id, Some(command.command_id));
/// # Ok::<(), composable::bus::MessageError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMessage {
    /// The command's id, stable across deliveries and retries.
    pub command_id: Uuid,
    /// The target aggregate's stream category.
    pub aggregate: String,
    /// The target instance's id.
    pub aggregate_id: String,
    /// The command's stable name.
    pub name: String,
    /// The codec format of `payload`.
    pub format: String,
    /// The flow the command belongs to.
    pub correlation_id: Uuid,
    /// The message that caused it.
    pub causation_id: Uuid,
    /// Where the reply goes.
    pub reply_to: String,
    /// The span that sent it, when traces are recorded ([`crate::trace`]): the span that
    /// executes it becomes that span's child.
    pub trace: Option<TraceContext>,
    /// The encoded command.
    pub payload: Vec<u8>,
}

impl CommandMessage {
    /// The message to [`command_topic`] of the aggregate, keyed by the target's stream id
    /// (`{aggregate}-{aggregate_id}`), with the rest in [`headers`].
    pub fn to_message(&self) -> BusMessage {
        let message = BusMessage::new(
            command_topic(&self.aggregate),
            format!("{}-{}", self.aggregate, self.aggregate_id),
            self.payload.clone(),
        )
        .with_header(headers::COMMAND_ID, self.command_id.to_string())
        .with_header(headers::COMMAND_NAME, self.name.clone())
        .with_header(headers::AGGREGATE, self.aggregate.clone())
        .with_header(headers::AGGREGATE_ID, self.aggregate_id.clone())
        .with_header(headers::FORMAT, self.format.clone())
        .with_header(headers::CORRELATION_ID, self.correlation_id.to_string())
        .with_header(headers::CAUSATION_ID, self.causation_id.to_string())
        .with_header(headers::REPLY_TO, self.reply_to.clone());
        match self.trace {
            Some(trace) => message.with_header(headers::TRACEPARENT, trace.to_string()),
            None => message,
        }
    }

    /// The command a message carries, read back from its headers and payload.
    ///
    /// # Errors
    /// [`MessageError`] naming the missing or malformed header.
    pub fn from_message(message: &BusMessage) -> Result<Self, MessageError> {
        Ok(Self {
            command_id: message.parse_header(headers::COMMAND_ID)?,
            aggregate: message.text_header(headers::AGGREGATE)?.to_owned(),
            aggregate_id: message.text_header(headers::AGGREGATE_ID)?.to_owned(),
            name: message.text_header(headers::COMMAND_NAME)?.to_owned(),
            format: message.text_header(headers::FORMAT)?.to_owned(),
            correlation_id: message.parse_header(headers::CORRELATION_ID)?,
            causation_id: message.parse_header(headers::CAUSATION_ID)?,
            reply_to: message.text_header(headers::REPLY_TO)?.to_owned(),
            trace: message.trace_context(),
            payload: message.payload.clone(),
        })
    }

    /// The context the command executes in: its flow, its cause and its command id.
    pub fn context(&self) -> CommandContext {
        CommandContext::caused_by(self.correlation_id, self.causation_id)
            .with_command_id(self.command_id)
    }
}

/// What became of a command, as its reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// Executed: its events (if it decided any) are committed.
    Accepted,
    /// A repeat of a command that had already taken effect: nothing was appended.
    Duplicate,
    /// The aggregate refused it, for this reason. A saga compensates.
    Rejected {
        /// The aggregate's error, as a message.
        reason: String,
    },
    /// It could not be decoded or executed (an unknown command, a store failure). Sending it
    /// again may succeed.
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl ReplyOutcome {
    /// The value of the [`headers::OUTCOME`] header.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Rejected { .. } => "rejected",
            Self::Failed { .. } => "failed",
        }
    }
}

impl fmt::Display for ReplyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accepted | Self::Duplicate => f.write_str(self.as_str()),
            Self::Rejected { reason } | Self::Failed { reason } => {
                write!(f, "{}: {reason}", self.as_str())
            }
        }
    }
}

/// The answer to one command, published to the command's reply topic.
///
/// ```
/// use composable::command_bus::{CommandReply, ReplyOutcome};
///
/// let reply = CommandReply {
///     command_id: uuid::Uuid::now_v7(),
///     outcome: ReplyOutcome::Rejected { reason: "the card was declined".into() },
/// };
/// let message = reply.to_message("checkout-replies");
/// assert_eq!(message.topic, "checkout-replies");
/// assert_eq!(CommandReply::from_message(&message)?, reply);
/// # Ok::<(), composable::bus::MessageError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandReply {
    /// The command answered.
    pub command_id: Uuid,
    /// What became of it.
    pub outcome: ReplyOutcome,
}

impl CommandReply {
    /// The message carrying this reply to `topic`, keyed by the command id, the outcome in
    /// [`headers::OUTCOME`] and a rejection's or failure's reason as the payload.
    pub fn to_message(&self, topic: &str) -> BusMessage {
        let payload = match &self.outcome {
            ReplyOutcome::Accepted | ReplyOutcome::Duplicate => Vec::new(),
            ReplyOutcome::Rejected { reason } | ReplyOutcome::Failed { reason } => {
                reason.clone().into_bytes()
            }
        };
        BusMessage::new(topic, self.command_id.to_string(), payload)
            .with_header(headers::COMMAND_ID, self.command_id.to_string())
            .with_header(headers::OUTCOME, self.outcome.as_str())
    }

    /// The reply a message carries. A reason that is not UTF-8 is read lossily: it is only
    /// ever shown.
    ///
    /// # Errors
    /// [`MessageError`] naming the missing or malformed header.
    pub fn from_message(message: &BusMessage) -> Result<Self, MessageError> {
        let command_id = message.parse_header(headers::COMMAND_ID)?;
        let reason = || String::from_utf8_lossy(&message.payload).into_owned();
        let outcome = match message.text_header(headers::OUTCOME)? {
            "accepted" => ReplyOutcome::Accepted,
            "duplicate" => ReplyOutcome::Duplicate,
            "rejected" => ReplyOutcome::Rejected { reason: reason() },
            "failed" => ReplyOutcome::Failed { reason: reason() },
            other => {
                return Err(MessageError::MalformedHeader {
                    name: headers::OUTCOME,
                    value: other.to_owned(),
                    reason: "expected `accepted`, `duplicate`, `rejected` or `failed`".into(),
                });
            }
        };
        Ok(Self { command_id, outcome })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> CommandMessage {
        CommandMessage {
            command_id: Uuid::now_v7(),
            aggregate: "payment".into(),
            aggregate_id: "order-7".into(),
            name: "Charge".into(),
            format: "bincode2".into(),
            correlation_id: Uuid::now_v7(),
            causation_id: Uuid::now_v7(),
            reply_to: "saga-replies".into(),
            trace: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap()),
            payload: vec![9, 8, 7],
        }
    }

    #[test]
    fn missing_and_malformed_command_headers_are_named() {
        let mut message = command().to_message();
        message.headers.retain(|(name, _)| name != headers::REPLY_TO);
        assert_eq!(
            CommandMessage::from_message(&message),
            Err(MessageError::MissingHeader { name: headers::REPLY_TO })
        );

        let mut message = command().to_message();
        for (name, value) in &mut message.headers {
            if name == headers::COMMAND_ID {
                *value = b"not-a-uuid".to_vec();
            }
        }
        assert!(matches!(
            CommandMessage::from_message(&message),
            Err(MessageError::MalformedHeader { name: headers::COMMAND_ID, ref value, .. })
                if value == "not-a-uuid"
        ));

        let mut message = command().to_message();
        for (name, value) in &mut message.headers {
            if name == headers::COMMAND_NAME {
                *value = vec![0xff, 0xfe];
            }
        }
        assert!(matches!(
            CommandMessage::from_message(&message),
            Err(MessageError::MalformedHeader { name: headers::COMMAND_NAME, ref reason, .. })
                if reason == "not UTF-8"
        ));
    }

    #[test]
    fn every_outcome_survives_the_round_trip_and_unknown_ones_are_refused() {
        let id = Uuid::now_v7();
        for outcome in [
            ReplyOutcome::Accepted,
            ReplyOutcome::Duplicate,
            ReplyOutcome::Rejected { reason: "no".into() },
            ReplyOutcome::Failed { reason: "store down".into() },
        ] {
            let reply = CommandReply { command_id: id, outcome };
            assert_eq!(CommandReply::from_message(&reply.to_message("r")), Ok(reply));
        }
        let mut message =
            CommandReply { command_id: id, outcome: ReplyOutcome::Accepted }.to_message("r");
        for (name, value) in &mut message.headers {
            if name == headers::OUTCOME {
                *value = b"maybe".to_vec();
            }
        }
        assert!(matches!(
            CommandReply::from_message(&message),
            Err(MessageError::MalformedHeader { name: headers::OUTCOME, ref value, .. })
                if value == "maybe"
        ));
        message.headers.retain(|(name, _)| name != headers::OUTCOME);
        assert_eq!(
            CommandReply::from_message(&message),
            Err(MessageError::MissingHeader { name: headers::OUTCOME })
        );
    }
}
