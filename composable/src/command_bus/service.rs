//! The receiving side: hosts aggregate runners behind their command topics.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{CommandMessage, CommandReply, ReplyOutcome, command_topic, headers};
use crate::BoxError;
use crate::aggregate::Aggregate;
use crate::backoff::Backoff;
use crate::bus::{BusError, BusMessage, Delivery, EventBus, MessageError};
use crate::codec::{Bincode, Codec};
use crate::command::CommandCodec;
use crate::consumer::{BusConsumer, MessageHandler};
use crate::event_store::EventStore;
use crate::runner::{AggregateRunner, CommandError};
use crate::service::{Service, ServiceContext};

/// Why a delivery was not answered; it was nacked, so the bus delivers it again (and, after the
/// last attempt its [`RedeliveryPolicy`](crate::bus::RedeliveryPolicy) allows, moves it to the
/// dead-letter topic).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The message names no command id or reply topic, so no reply can be sent.
    #[error("a command message that cannot be answered: {0}")]
    Unanswerable(#[source] MessageError),
    /// The reply could not be published; the command will be redelivered, and answered as a
    /// duplicate if it took effect.
    #[error("cannot publish the reply to command {command_id}: {source}")]
    Reply {
        /// The command.
        command_id: uuid::Uuid,
        /// The bus's error.
        #[source]
        source: BusError,
    },
}

/// Consumes the command topics of the aggregates routed to it, executes each command on its
/// aggregate's [`AggregateRunner`] and publishes the reply. See the [module docs](super) for
/// the protocol and [`BusDispatcher`](super::BusDispatcher) for an example.
///
/// It is a [`Service`]: run it with [`service::spawn`](crate::service::spawn). It consumes
/// through a [`BusConsumer`], so deliveries are served one at a time, in the order the bus hands
/// them out (so per target instance, in publish order); several services in one consumer group
/// share the topics' partitions. A delivery is acknowledged only after its reply was published:
///
/// * a command that executed, was a duplicate or was refused gets that reply;
/// * a message whose headers don't describe a command, a command for an aggregate this service
///   doesn't host, an unknown command name, a payload that doesn't decode, or a runner failure
///   (a store error, a conflict the retry policy didn't resolve) gets a `failed` reply. The
///   delivery is then acknowledged, not retried here: redelivering an undecodable message can't
///   help, and for a store failure the sender learns at once and retries with the same command
///   id, which the aggregate deduplicates;
/// * a message without a readable command id or reply topic can't be answered: it is nacked,
///   so the bus retries it and finally moves it to the dead-letter topic, where an operator
///   sees it. So is a delivery whose reply could not be published.
pub struct CommandService<B, C = Bincode> {
    bus: B,
    codec: C,
    group: Option<String>,
    backoff: Option<Backoff>,
    routes: HashMap<&'static str, Arc<dyn Route<C>>>,
}

impl<B, C> fmt::Debug for CommandService<B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut routes: Vec<&str> = self.routes.keys().copied().collect();
        routes.sort_unstable();
        f.debug_struct("CommandService")
            .field("group", &self.group)
            .field("routes", &routes)
            .finish_non_exhaustive()
    }
}

impl<B: EventBus, C: Codec> CommandService<B, C> {
    /// A service consuming from `bus`, decoding commands with `codec`; no routes yet.
    pub fn new(bus: B, codec: C) -> Self {
        Self { bus, codec, group: None, backoff: None, routes: HashMap::new() }
    }

    /// Consumes in consumer group `group` (by default the one
    /// [`default_group`](crate::bus::default_group) derives from the command topics).
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// How its consumer retries what failed — joining the group, a delivery it answers again
    /// in place ([`BusConsumer::backoff`]); the consumer's own default otherwise.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Serves the commands of aggregate `A` (from `{A::STREAM}-commands`) with `runner`,
    /// replacing an earlier route for `A`.
    #[must_use]
    pub fn route<A, S, E>(mut self, runner: Arc<AggregateRunner<A, S, E>>) -> Self
    where
        A: Aggregate,
        A::Command: CommandCodec<C> + Clone,
        S: EventStore,
        E: Codec,
    {
        self.routes.insert(A::STREAM, runner);
        self
    }

    /// The topics this service consumes.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.routes.keys().map(|name| command_topic(name)).collect();
        topics.sort_unstable();
        topics
    }

    /// Serves one delivery: [`answer`](Self::answer)s it, then acknowledges it, or nacks it
    /// when it could not be answered; returns the reply sent. For services with a consumer loop
    /// of their own.
    ///
    /// # Errors
    /// See [`ServeError`]; the delivery was nacked.
    pub async fn serve(&self, delivery: Delivery) -> Result<CommandReply, ServeError> {
        match self.answer(delivery.message()).await {
            Ok(reply) => {
                delivery.ack();
                Ok(reply)
            }
            Err(error) => {
                delivery.nack(&error);
                Err(error)
            }
        }
    }

    /// Decodes `message`, executes the command and publishes the reply; returns the reply sent.
    ///
    /// # Errors
    /// See [`ServeError`]: the message must be delivered again.
    pub async fn answer(&self, message: &BusMessage) -> Result<CommandReply, ServeError> {
        let (command_id, reply_to) = match (
            message.parse_header::<uuid::Uuid>(headers::COMMAND_ID),
            message.text_header(headers::REPLY_TO),
        ) {
            (Ok(command_id), Ok(reply_to)) => (command_id, reply_to.to_owned()),
            (Err(error), _) | (_, Err(error)) => return Err(ServeError::Unanswerable(error)),
        };
        let outcome = match CommandMessage::from_message(message) {
            Err(error) => ReplyOutcome::Failed { reason: format!("unreadable command: {error}") },
            Ok(command) => self.execute(&command).await,
        };
        if let ReplyOutcome::Failed { reason } = &outcome {
            tracing::warn!(command = %command_id, topic = %message.topic, reason, "a command failed");
        }
        let reply = CommandReply { command_id, outcome };
        match self.bus.publish(vec![reply.to_message(&reply_to)]).await {
            Ok(()) => Ok(reply),
            Err(source) => Err(ServeError::Reply { command_id, source }),
        }
    }

    async fn execute(&self, command: &CommandMessage) -> ReplyOutcome {
        match self.routes.get(command.aggregate.as_str()) {
            Some(route) => route.execute(command, &self.codec).await,
            None => {
                let mut hosted: Vec<&str> = self.routes.keys().copied().collect();
                hosted.sort_unstable();
                ReplyOutcome::Failed {
                    reason: format!(
                        "this service does not host aggregate `{}` (it hosts {hosted:?})",
                        command.aggregate
                    ),
                }
            }
        }
    }
}

impl<B: EventBus, C: Codec> MessageHandler for CommandService<B, C> {
    type Error = ServeError;

    async fn handle(&mut self, message: &BusMessage) -> Result<(), ServeError> {
        self.answer(message).await.map(drop)
    }
}

impl<B: EventBus + Clone, C: Codec> Service for CommandService<B, C> {
    fn name(&self) -> String {
        let mut hosted: Vec<&str> = self.routes.keys().copied().collect();
        hosted.sort_unstable();
        format!("commands[{}]", hosted.join(","))
    }

    /// Serves commands until asked to stop; the delivery in hand is finished first.
    async fn run(self, context: ServiceContext) -> Result<(), BoxError> {
        let name = self.name();
        let topics = self.topics();
        let (group, backoff) = (self.group.clone(), self.backoff);
        let mut consumer = BusConsumer::new(name, self.bus.clone(), topics, self);
        if let Some(group) = group {
            consumer = consumer.with_group(group);
        }
        if let Some(backoff) = backoff {
            consumer = consumer.backoff(backoff);
        }
        consumer.run(context).await
    }
}

/// One hosted runner, with its aggregate type erased.
trait Route<C>: Send + Sync {
    fn execute<'a>(
        &'a self,
        command: &'a CommandMessage,
        codec: &'a C,
    ) -> BoxFuture<'a, ReplyOutcome>;
}

impl<A, S, E, C> Route<C> for AggregateRunner<A, S, E>
where
    A: Aggregate,
    A::Command: CommandCodec<C> + Clone,
    S: EventStore,
    E: Codec,
    C: Codec,
{
    fn execute<'a>(
        &'a self,
        command: &'a CommandMessage,
        codec: &'a C,
    ) -> BoxFuture<'a, ReplyOutcome> {
        Box::pin(async move {
            if command.format != codec.format() {
                return ReplyOutcome::Failed {
                    reason: format!(
                        "the command was encoded as `{}`, but this service reads `{}`",
                        command.format,
                        codec.format()
                    ),
                };
            }
            let decoded = match A::Command::decode(codec, &command.name, &command.payload) {
                Ok(decoded) => decoded,
                Err(error) => return ReplyOutcome::Failed { reason: error.to_string() },
            };
            match self.execute_in(&command.aggregate_id, decoded, command.context()).await {
                Ok(executed) if executed.duplicate => ReplyOutcome::Duplicate,
                Ok(_) => ReplyOutcome::Accepted,
                Err(CommandError::Rejected(error)) => {
                    ReplyOutcome::Rejected { reason: error.to_string() }
                }
                Err(error) => ReplyOutcome::Failed { reason: error.to_string() },
            }
        })
    }
}
