//! The sending side: a [`Dispatcher`] that publishes commands and waits for their
//! replies.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{CommandMessage, CommandReply, ReplyOutcome};
use crate::aggregate::Aggregate;
use crate::breaker::{BreakerError, CircuitBreaker};
use crate::bus::{BusError, EventBus, Subscription};
use crate::clock::{Clock, SystemClock};
use crate::codec::{Bincode, Codec, CodecError};
use crate::command::CommandCodec;
use crate::command::CommandContext;
use crate::dispatch::{Dispatch, DispatchError, Dispatcher};
use crate::trace::TraceContext;

/// Encodes a dispatch for one aggregate: `None` when its command is not that aggregate's.
type Encoder<C> = fn(&Dispatch, &C) -> Option<Result<(&'static str, Vec<u8>), CodecError>>;

/// Who waits for the reply to which command.
type Waiters = HashMap<Uuid, Vec<oneshot::Sender<ReplyOutcome>>>;

/// Why a command sent through the bus did not take effect (the `source` of the
/// [`DispatchError`] a [`BusDispatcher`] returns).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandBusError {
    /// The aggregate refused the command.
    #[error("command {command_id} was rejected: {reason}")]
    Rejected {
        /// The command.
        command_id: Uuid,
        /// The aggregate's error, as a message.
        reason: String,
    },
    /// The command service could not decode or execute the command.
    #[error("command {command_id} failed in the command service: {reason}")]
    Failed {
        /// The command.
        command_id: Uuid,
        /// What the service said.
        reason: String,
    },
    /// No reply came in time. The command may or may not have taken effect; sending it again
    /// with the same id is safe.
    #[error("no reply to command {command_id} on `{reply_topic}` within {timeout:?}")]
    Timeout {
        /// The command.
        command_id: Uuid,
        /// Where the reply was expected.
        reply_topic: String,
        /// How long the dispatcher waited.
        timeout: Duration,
    },
    /// The command could not be encoded.
    #[error("cannot encode the command: {0}")]
    Encode(#[source] CodecError),
    /// The command's type is not a command of the aggregate it is addressed to.
    #[error("the command {command} is not a command of `{aggregate}`")]
    Mismatch {
        /// The target's stream category.
        aggregate: &'static str,
        /// The command, as `Debug` shows it.
        command: String,
    },
    /// The bus refused or lost the command.
    #[error("cannot publish command {command_id}: {source}")]
    Publish {
        /// The command.
        command_id: Uuid,
        /// The bus's error.
        #[source]
        source: BusError,
    },
    /// The reply topic could not be subscribed to.
    #[error("cannot listen for replies on `{reply_topic}`: {source}")]
    Subscribe {
        /// The reply topic.
        reply_topic: String,
        /// The bus's error.
        #[source]
        source: BusError,
    },
    /// The reply listener stopped (its subscription closed) before the reply came.
    #[error(
        "the reply listener on `{reply_topic}` stopped before command {command_id} was answered"
    )]
    ListenerStopped {
        /// The command.
        command_id: Uuid,
        /// The reply topic.
        reply_topic: String,
    },
}

/// A [`Dispatcher`] that sends commands through an [`EventBus`] to a
/// [`CommandService`](super::CommandService) and waits for each reply. See the
/// [module docs](super) for the protocol.
///
/// Each dispatcher listens on its own reply topic, in its own consumer group (by default the one
/// [`default_group`](crate::bus::default_group) derives from the topic): give every process
/// that dispatches its own reply topic, or replies meant for one would be consumed by another.
/// The listener starts with the first dispatch (or [`listen`](Self::listen)) and stops when the
/// dispatcher is dropped.
///
/// ```
/// # use composable::{aggregate, apply, command, event};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Default)] pub struct Payment { charged: bool }
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Charge;
/// # #[event(name = "payment.charged", version = 1)]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Charged;
/// # #[derive(Debug, thiserror::Error)] #[error("already charged")] pub struct Twice;
/// # #[aggregate(stream = "payment")]
/// # impl Payment {
/// #     #[command] fn charge(&self, _c: Charge) -> Result<Charged, Twice> {
/// #         if self.charged { Err(Twice) } else { Ok(Charged) }
/// #     }
/// #     #[apply] fn charged(&mut self, _e: &Charged) { self.charged = true }
/// # }
/// use std::sync::Arc;
/// use std::time::Duration;
/// use composable::bus::InMemoryBus;
/// use composable::command_bus::{BusDispatcher, CommandService};
/// use composable::dispatch::{Dispatch, DispatchError, Dispatcher};
/// use composable::{AggregateRunner, Bincode, CommandContext, InMemoryEventStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let bus = InMemoryBus::new();
/// // Where the aggregates live (usually another process):
/// let payments = Arc::new(AggregateRunner::<Payment, _>::new(InMemoryEventStore::new(), ()));
/// let service = composable::service::spawn(CommandService::new(bus.clone(), Bincode).route(payments));
/// // Where the saga lives:
/// let dispatcher = BusDispatcher::new(bus, Bincode, "checkout-replies")
///     .route::<Payment>()
///     .with_timeout(Duration::from_secs(5));
/// let charge = CommandContext::new_flow().with_command_id(uuid::Uuid::now_v7());
/// dispatcher.dispatch(Dispatch::to::<Payment>("o1", Charge), charge).await?;
/// // The same command again is a duplicate, answered as done; a new one is refused.
/// dispatcher.dispatch(Dispatch::to::<Payment>("o1", Charge), charge).await?;
/// let other = CommandContext::new_flow().with_command_id(uuid::Uuid::now_v7());
/// let refused = dispatcher.dispatch(Dispatch::to::<Payment>("o1", Charge), other).await;
/// assert!(matches!(refused, Err(DispatchError::Rejected { .. })));
/// service.stop().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct BusDispatcher<B, C = Bincode> {
    bus: B,
    codec: C,
    reply_topic: String,
    group: Option<String>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    routes: HashMap<&'static str, Encoder<C>>,
    waiters: Arc<Mutex<Waiters>>,
    listener: tokio::sync::Mutex<Option<Listener>>,
    breaker: Option<CircuitBreaker>,
}

impl<B, C> fmt::Debug for BusDispatcher<B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut routes: Vec<&str> = self.routes.keys().copied().collect();
        routes.sort_unstable();
        f.debug_struct("BusDispatcher")
            .field("reply_topic", &self.reply_topic)
            .field("timeout", &self.timeout)
            .field("routes", &routes)
            .finish_non_exhaustive()
    }
}

/// The task reading replies; aborted when the dispatcher is dropped.
struct Listener {
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<B: EventBus, C: Codec> BusDispatcher<B, C> {
    /// A dispatcher publishing on `bus`, encoding commands with `codec`, and listening for
    /// replies on `reply_topic`; no routes, a 30 s timeout.
    pub fn new(bus: B, codec: C, reply_topic: impl Into<String>) -> Self {
        Self {
            bus,
            codec,
            reply_topic: reply_topic.into(),
            group: None,
            timeout: Duration::from_secs(30),
            clock: Arc::new(SystemClock),
            routes: HashMap::new(),
            waiters: Arc::new(Mutex::new(HashMap::new())),
            listener: tokio::sync::Mutex::new(None),
            breaker: None,
        }
    }

    /// Sends commands through `breaker`: once too many sends fail to be published or answered
    /// (a timeout, the listener gone), dispatches fail at once with [`BreakerError::Open`] as
    /// their source — a [`DispatchError::Failed`], which the saga retries with its back-off —
    /// until a probe gets through. A refusal by the aggregate is an answer, not a failure.
    #[must_use]
    pub fn with_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Sends the commands of aggregate `A` through the bus (to `{A::STREAM}-commands`).
    #[must_use]
    pub fn route<A>(mut self) -> Self
    where
        A: Aggregate,
        A::Command: CommandCodec<C>,
    {
        self.routes.insert(A::STREAM, encode::<A, C>);
        self
    }

    /// How long [`dispatch`](Dispatcher::dispatch) waits for a reply before it reports
    /// [`CommandBusError::Timeout`] (default 30 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Waits for replies on `clock` (the system clock by default).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Listens for replies in consumer group `group` instead of the one derived from the reply
    /// topic.
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// The topic replies are expected on.
    pub fn reply_topic(&self) -> &str {
        &self.reply_topic
    }

    /// Starts the reply listener now, rather than at the first dispatch, so that a bus that
    /// refuses the subscription is reported at start-up.
    ///
    /// # Errors
    /// [`CommandBusError::Subscribe`] when the bus refuses the subscription.
    pub async fn listen(&self) -> Result<(), CommandBusError> {
        let mut listener = self.listener.lock().await;
        if listener.as_ref().is_some_and(|listener| !listener.task.is_finished()) {
            return Ok(());
        }
        let subscription =
            self.bus.subscribe(self.group.as_deref(), &[self.reply_topic.as_str()]).await.map_err(
                |source| CommandBusError::Subscribe {
                    reply_topic: self.reply_topic.clone(),
                    source,
                },
            )?;
        let task = tokio::spawn(read_replies(
            subscription,
            Arc::clone(&self.waiters),
            self.reply_topic.clone(),
        ));
        *listener = Some(Listener { task });
        Ok(())
    }

    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        lock(&self.waiters)
    }

    /// Sends `command` and waits for its reply.
    async fn send(&self, command: CommandMessage) -> Result<ReplyOutcome, CommandBusError> {
        self.listen().await?;
        let command_id = command.command_id;
        let (sender, reply) = oneshot::channel();
        // Registered before publishing: the reply may come back before `publish` returns.
        self.waiters().entry(command_id).or_default().push(sender);
        if let Err(source) = self.bus.publish(vec![command.to_message()]).await {
            self.forget(command_id);
            return Err(CommandBusError::Publish { command_id, source });
        }
        // A reply that is in is taken, even when the deadline passed in the same turn.
        let answered = tokio::select! {
            biased;
            answered = reply => Some(answered),
            () = self.clock.sleep(self.timeout) => None,
        };
        match answered {
            Some(Ok(outcome)) => Ok(outcome),
            Some(Err(_)) => Err(CommandBusError::ListenerStopped {
                command_id,
                reply_topic: self.reply_topic.clone(),
            }),
            None => {
                self.forget(command_id);
                Err(CommandBusError::Timeout {
                    command_id,
                    reply_topic: self.reply_topic.clone(),
                    timeout: self.timeout,
                })
            }
        }
    }

    /// Drops the waiters of `command_id` that nobody awaits any more.
    fn forget(&self, command_id: Uuid) {
        let mut waiters = self.waiters();
        if let Some(senders) = waiters.get_mut(&command_id) {
            senders.retain(|sender| !sender.is_closed());
            if senders.is_empty() {
                waiters.remove(&command_id);
            }
        }
    }
}

impl<B: EventBus, C: Codec> Dispatcher for BusDispatcher<B, C> {
    async fn dispatch(
        &self,
        dispatch: Dispatch,
        context: CommandContext,
    ) -> Result<(), DispatchError> {
        let aggregate = dispatch.aggregate();
        let Some(encode) = self.routes.get(aggregate) else {
            return Err(DispatchError::NoRoute { aggregate });
        };
        let id = dispatch.id().to_owned();
        let failed = |source: CommandBusError| DispatchError::Failed {
            aggregate,
            id: id.clone(),
            source: Box::new(source),
        };
        let (name, payload) = match encode(&dispatch, &self.codec) {
            Some(Ok(encoded)) => encoded,
            Some(Err(error)) => return Err(failed(CommandBusError::Encode(error))),
            None => {
                return Err(failed(CommandBusError::Mismatch {
                    aggregate,
                    command: format!("{dispatch:?}"),
                }));
            }
        };
        // A context without an id still needs one to be matched with its reply; such a command
        // is not deduplicated when sent again.
        let command_id = context.command_id.unwrap_or_else(Uuid::now_v7);
        let command = CommandMessage {
            command_id,
            aggregate: aggregate.to_owned(),
            aggregate_id: id.clone(),
            name: name.to_owned(),
            format: self.codec.format().to_owned(),
            correlation_id: context.correlation_id,
            causation_id: context.causation_id,
            reply_to: self.reply_topic.clone(),
            trace: TraceContext::current(),
            payload,
        };
        let sent = match &self.breaker {
            Some(breaker) => match breaker.call(self.send(command)).await {
                Ok(outcome) => Ok(outcome),
                Err(BreakerError::Failed(error)) => Err(error),
                Err(open @ BreakerError::Open { .. }) => {
                    return Err(DispatchError::Failed { aggregate, id, source: Box::new(open) });
                }
            },
            None => self.send(command).await,
        };
        match sent {
            Ok(ReplyOutcome::Accepted | ReplyOutcome::Duplicate) => Ok(()),
            Ok(ReplyOutcome::Rejected { reason }) => Err(DispatchError::Rejected {
                aggregate,
                id: id.clone(),
                reason: reason.clone(),
                source: Box::new(CommandBusError::Rejected { command_id, reason }),
            }),
            Ok(ReplyOutcome::Failed { reason }) => {
                Err(failed(CommandBusError::Failed { command_id, reason }))
            }
            Err(error) => Err(failed(error)),
        }
    }
}

fn encode<A, C>(
    dispatch: &Dispatch,
    codec: &C,
) -> Option<Result<(&'static str, Vec<u8>), CodecError>>
where
    A: Aggregate,
    A::Command: CommandCodec<C>,
    C: Codec,
{
    let command = dispatch.command::<A>()?;
    Some(command.encode(codec).map(|payload| (command.command_name(), payload)))
}

fn lock(waiters: &Mutex<Waiters>) -> MutexGuard<'_, Waiters> {
    // Every change under the lock is a single insert or removal: a panic cannot leave it torn.
    waiters.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hands each reply to whoever waits for its command id, and acknowledges it: replies are
/// answers to questions asked by this process, worth nothing once nobody waits.
async fn read_replies(
    mut subscription: Subscription,
    waiters: Arc<Mutex<Waiters>>,
    reply_topic: String,
) {
    while let Some(next) = subscription.next().await {
        let delivery = match next {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::warn!(%reply_topic, %error, "the reply subscription reported an error");
                continue;
            }
        };
        let message = delivery.message();
        let (command_id, outcome) = match CommandReply::from_message(message) {
            Ok(reply) => (reply.command_id, reply.outcome),
            Err(error) => match message.parse_header::<Uuid>(super::headers::COMMAND_ID) {
                // The command is known, its answer is not: report that rather than time out.
                Ok(command_id) => (
                    command_id,
                    ReplyOutcome::Failed { reason: format!("unreadable reply: {error}") },
                ),
                Err(_) => {
                    tracing::warn!(%reply_topic, %error, "ignoring a reply naming no command");
                    delivery.ack();
                    continue;
                }
            },
        };
        let senders = lock(&waiters).remove(&command_id);
        match senders {
            Some(senders) => {
                for sender in senders {
                    // A waiter that gave up (timed out) has dropped its receiver.
                    let _ = sender.send(outcome.clone());
                }
            }
            None => {
                tracing::debug!(%reply_topic, command = %command_id, %outcome, "a reply nobody waits for");
            }
        }
        delivery.ack();
    }
    tracing::warn!(%reply_topic, "the reply subscription closed");
    // Waiters fail at once instead of timing out; the next dispatch subscribes again.
    lock(&waiters).clear();
}
