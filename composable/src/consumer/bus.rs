//! Consuming the bus: a subscription in a consumer group, each delivery handled, then
//! acknowledged or refused.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tracing::Instrument;

use super::EventHandler;
use crate::BoxError;
use crate::backoff::{Backoff, Failures};
use crate::bus::{BusError, BusMessage, Delivery, EventBus, MessageError, Subscription, headers};
use crate::clock::{Clock, SystemClock};
use crate::service::{Service, ServiceContext};
use crate::stream::Position;

/// Handles one message from the bus at a time.
///
/// `Ok` acknowledges the delivery; `Err` refuses it, and the bus delivers it again after its
/// [`RedeliveryPolicy`](crate::bus::RedeliveryPolicy)'s back-off, or moves it to the dead-letter
/// topic after the last attempt. A delivery the consumer received but did not hand over before
/// stopping is neither: the bus delivers it again.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot handle bus messages",
    note = "implement `composable::consumer::MessageHandler`, or wrap an `EventHandler` in \
            `composable::consumer::Events` to handle the events the relay published"
)]
pub trait MessageHandler: Send + 'static {
    /// Why a message could not be handled.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Handles `message`.
    fn handle(
        &mut self,
        message: &BusMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// What the consumer does with a delivery whose handling failed with `error`: by default
    /// [`OnError::Refuse`] — the bus redelivers it with its policy, then dead-letters it.
    fn on_error(&self, error: &Self::Error) -> OnError {
        let _ = error;
        OnError::Refuse
    }

    /// The position of the newest event it handled, if it knows one: what the consumer reports
    /// in its health once nothing waits (none by default).
    fn position(&self) -> Option<Position> {
        None
    }
}

/// What a [`BusConsumer`] does with a delivery its [`MessageHandler`] failed
/// ([`MessageHandler::on_error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Refuses it: the bus delivers it again after its
    /// [`RedeliveryPolicy`](crate::bus::RedeliveryPolicy)'s back-off, and moves it to the
    /// dead-letter topic after the last attempt. For what may fail again and again (a poison
    /// message), when going on without it is right.
    Refuse,
    /// Hands it to the handler again, with the consumer's back-off, for as long as the consumer
    /// runs — the bus never dead-letters it. For a failure that passes by itself (a database
    /// restarting) when no message may be skipped. A stop asked for meanwhile leaves it
    /// unanswered, so the bus delivers it again.
    Retry,
    /// Stops the consumer with the error, leaving the delivery unanswered (delivered again after
    /// a restart): for a failure that neither retrying nor skipping may fix.
    Stop,
}

/// An [`EventHandler`] fed the events the relay published on the bus, one at a time: the same
/// handler runs from the log or from the bus.
#[derive(Debug, Clone)]
pub struct Events<H>(pub H);

/// An event from the bus could not be handled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventsError<E: std::error::Error + 'static> {
    /// The message does not carry an event.
    #[error("the message on `{topic}` does not carry an event: {source}")]
    Message {
        /// Its topic.
        topic: String,
        /// What is wrong with it.
        #[source]
        source: MessageError,
    },
    /// The handler failed.
    #[error(transparent)]
    Handler(E),
}

impl<H: EventHandler> MessageHandler for Events<H> {
    type Error = EventsError<H::Error>;

    async fn handle(&mut self, message: &BusMessage) -> Result<(), Self::Error> {
        let event = message
            .to_event()
            .map_err(|source| EventsError::Message { topic: message.topic.clone(), source })?;
        self.0.handle(std::slice::from_ref(&event)).await.map_err(EventsError::Handler)
    }
}

/// A [`BusConsumer`] could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusConsumerError {
    /// The bus refused the subscription, or kept failing it for the back-off's attempts.
    #[error("consumer `{consumer}` cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        /// The consumer's name.
        consumer: String,
        /// The topics.
        topics: Vec<String>,
        /// The bus's error.
        #[source]
        source: BusError,
    },
    /// The subscription failed in a way retrying cannot fix.
    #[error("consumer `{consumer}`'s subscription failed: {source}")]
    Subscription {
        /// The consumer's name.
        consumer: String,
        /// The bus's error.
        #[source]
        source: BusError,
    },
    /// The bus closed the subscription.
    #[error("the bus closed consumer `{consumer}`'s subscription")]
    Closed {
        /// The consumer's name.
        consumer: String,
    },
    /// The handler failed in a way it says must stop the consumer ([`OnError::Stop`]).
    #[error("consumer `{consumer}` stopped on a delivery from `{topic}`: {source}")]
    Handler {
        /// The consumer's name.
        consumer: String,
        /// The delivery's topic.
        topic: String,
        /// The handler's error.
        #[source]
        source: BoxError,
    },
}

/// How a delivery ended.
enum Handled {
    /// Acknowledged or refused.
    Answered,
    /// Left unanswered, for the bus to deliver again: the consumer was asked to stop while
    /// retrying it, or the handler asked to stop (the error). The subscription is to be
    /// dropped before the delivery, so the bus does not count it as a failed attempt.
    Unanswered(Box<(Delivery, Option<BusConsumerError>)>),
}

/// A [`MessageHandler`] fed from the bus in a consumer group, as a
/// [`Service`]: see the [module docs](super).
///
/// Deliveries are handled one at a time, in the order the bus hands them out (so per key, in
/// publish order); several consumers in one group share the topics' partitions. When asked to
/// stop it finishes the delivery in hand and leaves the group; what it had not taken yet goes to
/// the next owner of its partition. A subscription that cannot be made is retried with the
/// back-off while the bus reports it unavailable.
///
/// ```
/// use composable::bus::{BusMessage, EventBus, InMemoryBus};
/// use composable::consumer::{BusConsumer, MessageHandler};
/// use composable::service;
///
/// struct Print(tokio::sync::mpsc::Sender<String>);
///
/// impl MessageHandler for Print {
///     type Error = tokio::sync::mpsc::error::SendError<String>;
///     async fn handle(&mut self, message: &BusMessage) -> Result<(), Self::Error> {
///         self.0.send(message.key.clone()).await
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let bus = InMemoryBus::new();
/// let (printed, mut keys) = tokio::sync::mpsc::channel(8);
/// let consumer = BusConsumer::new("printer", bus.clone(), ["order-events"], Print(printed));
/// let handle = service::spawn(consumer);
/// bus.publish(vec![BusMessage::new("order-events", "order-1", b"placed".to_vec())]).await?;
/// assert_eq!(keys.recv().await.as_deref(), Some("order-1"));
/// handle.stop().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct BusConsumer<B, H> {
    name: String,
    bus: B,
    group: Option<String>,
    topics: Vec<String>,
    handler: H,
    backoff: Backoff,
    clock: Arc<dyn Clock>,
}

impl<B, H> fmt::Debug for BusConsumer<B, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusConsumer")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("topics", &self.topics)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl<B: EventBus, H: MessageHandler> BusConsumer<B, H> {
    /// `handler` fed from `topics` on `bus`, in the group
    /// [`default_group`](crate::bus::default_group) derives from the topics, retrying a
    /// subscription the bus reports unavailable from 100 ms doubling up to 5 s.
    pub fn new(
        name: impl Into<String>,
        bus: B,
        topics: impl IntoIterator<Item = impl Into<String>>,
        handler: H,
    ) -> Self {
        let mut topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        topics.sort_unstable();
        topics.dedup();
        Self {
            name: name.into(),
            bus,
            group: None,
            topics,
            handler,
            backoff: Backoff::exponential(Duration::from_millis(100))
                .max_delay(Duration::from_secs(5))
                .jitter(0.2),
            clock: Arc::new(SystemClock),
        }
    }

    /// Consumes in consumer group `group`.
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// How an unavailable bus is retried while subscribing or between deliveries.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Waits on `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The topics it consumes, sorted.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// Joins the group, retrying while the bus is unavailable. (`&mut self`, so that the
    /// future is `Send` without the handler being `Sync`.)
    async fn subscribe(
        &mut self,
        context: &mut ServiceContext,
    ) -> Result<Option<Subscription>, BusConsumerError> {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let mut failures = Failures::new(self.backoff);
        loop {
            let source = match self.bus.subscribe(self.group.as_deref(), &topics).await {
                Ok(subscription) => return Ok(Some(subscription)),
                Err(source) => source,
            };
            match failures.failed() {
                Some(wait) if source.is_transient() => {
                    tracing::warn!(consumer = %self.name, error = %source, retry_in = ?wait, "subscribing failed");
                    tokio::select! {
                        biased;
                        () = context.stopped() => return Ok(None),
                        () = self.clock.sleep(wait) => {}
                    }
                }
                _ => {
                    return Err(BusConsumerError::Subscribe {
                        consumer: self.name.clone(),
                        topics: self.topics.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Handles `delivery`, then acknowledges it, refuses it, or — as the handler's
    /// [`on_error`](MessageHandler::on_error) says — hands it over again or leaves it.
    async fn deliver(&mut self, delivery: Delivery, context: &mut ServiceContext) -> Handled {
        let message = delivery.message();
        let correlation = message.header(headers::CORRELATION_ID).map(String::from_utf8_lossy);
        let span = tracing::info_span!(
            "bus.delivery",
            consumer = %self.name,
            topic = %message.topic,
            key = %message.key,
            attempt = delivery.attempt(),
            correlation_id = correlation.as_deref().unwrap_or_default(),
        );
        // The handling belongs to the trace of the span that sent the message, in whichever
        // process that ran.
        crate::trace::TraceContext::follow(message.trace_context(), &span);
        self.answer(delivery, context).instrument(span).await
    }

    async fn answer(&mut self, delivery: Delivery, context: &mut ServiceContext) -> Handled {
        let mut failures = Failures::new(self.backoff.forever());
        loop {
            let error = match self.handler.handle(delivery.message()).await {
                Ok(()) => {
                    self.answered(&delivery, "handled");
                    delivery.ack();
                    return Handled::Answered;
                }
                Err(error) => error,
            };
            let topic = &delivery.message().topic;
            let on_error = self.handler.on_error(&error);
            self.answered(
                &delivery,
                match on_error {
                    OnError::Refuse => "refused",
                    OnError::Retry => "retried",
                    OnError::Stop => "stopped",
                },
            );
            match on_error {
                OnError::Refuse => {
                    tracing::warn!(
                        consumer = %self.name,
                        %topic,
                        attempt = delivery.attempt(),
                        %error,
                        "a delivery was not handled; the bus delivers it again"
                    );
                    delivery.nack(&error);
                    return Handled::Answered;
                }
                OnError::Retry => {
                    let wait = failures.failed().unwrap_or(Duration::ZERO);
                    tracing::warn!(consumer = %self.name, %topic, %error, retry_in = ?wait, "a delivery was not handled; retrying it");
                    tokio::select! {
                        biased;
                        () = context.stopped() => return Handled::Unanswered(Box::new((delivery, None))),
                        () = self.clock.sleep(wait) => {}
                    }
                }
                OnError::Stop => {
                    let error = BusConsumerError::Handler {
                        consumer: self.name.clone(),
                        topic: topic.clone(),
                        source: Box::new(error),
                    };
                    return Handled::Unanswered(Box::new((delivery, Some(error))));
                }
            }
        }
    }

    /// Counts how `delivery` was answered ([`metrics::BUS_DELIVERIES`](crate::metrics::BUS_DELIVERIES)).
    fn answered(&self, delivery: &Delivery, outcome: &'static str) {
        crate::metrics::delivery_answered(&self.name, delivery.message(), outcome, &*self.clock);
    }

    /// Runs until `context` asks it to stop.
    ///
    /// # Errors
    /// When the subscription cannot be made, fails for good, or is closed by the bus.
    pub async fn run_until_stopped(
        &mut self,
        context: &mut ServiceContext,
    ) -> Result<(), BusConsumerError> {
        let Some(mut subscription) = self.subscribe(context).await? else {
            return Ok(());
        };
        // A subscription that keeps reporting errors is waited on for ever: the bus recovers,
        // or the operator stops the service.
        let mut failures = Failures::new(self.backoff.forever());
        while !context.stop_requested() {
            let next = match subscription.next().now_or_never() {
                Some(next) => next,
                None => {
                    context.caught_up(self.handler.position());
                    crate::metrics::bus_consumer_idle(&self.name, &self.topics);
                    tokio::select! {
                        biased;
                        () = context.stopped() => return Ok(()),
                        next = subscription.next() => next,
                    }
                }
            };
            match next {
                None => return Err(BusConsumerError::Closed { consumer: self.name.clone() }),
                Some(Ok(delivery)) => {
                    failures.succeeded();
                    if let Handled::Unanswered(unanswered) = self.deliver(delivery, context).await {
                        let (delivery, error) = *unanswered;
                        drop(subscription);
                        drop(delivery);
                        return error.map_or(Ok(()), Err);
                    }
                }
                Some(Err(source)) if source.is_transient() => {
                    let wait = failures.failed().unwrap_or(Duration::ZERO);
                    tracing::warn!(consumer = %self.name, error = %source, retry_in = ?wait, "the subscription reported an error");
                    context.behind(None);
                    tokio::select! {
                        biased;
                        () = context.stopped() => return Ok(()),
                        () = self.clock.sleep(wait) => {}
                    }
                }
                Some(Err(source)) => {
                    return Err(BusConsumerError::Subscription {
                        consumer: self.name.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

impl<B: EventBus, H: MessageHandler> Service for BusConsumer<B, H> {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn run(mut self, mut context: ServiceContext) -> Result<(), BoxError> {
        self.run_until_stopped(&mut context).await.map_err(BoxError::from)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::bus::{InMemoryBus, RedeliveryPolicy};
    use crate::envelope::RecordedEvent;
    use crate::service;

    #[derive(Debug, thiserror::Error)]
    #[error("refused")]
    struct Refused;

    /// Refuses the first `refuse` messages; records the keys it handled.
    #[derive(Clone, Default)]
    struct Keys {
        seen: Arc<Mutex<Vec<String>>>,
        refuse: Arc<Mutex<usize>>,
    }

    impl MessageHandler for Keys {
        type Error = Refused;

        async fn handle(&mut self, message: &BusMessage) -> Result<(), Refused> {
            let mut refuse = self.refuse.lock().unwrap();
            if *refuse > 0 {
                *refuse -= 1;
                return Err(Refused);
            }
            self.seen.lock().unwrap().push(message.key.clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_refused_delivery_is_redelivered_and_dead_lettered_after_the_last_attempt() {
        let policy = RedeliveryPolicy::default()
            .retry(Backoff::constant(Duration::from_millis(1)).attempts(3));
        let bus = InMemoryBus::new().with_redelivery(policy);
        let keys = Keys { refuse: Arc::new(Mutex::new(4)), ..Keys::default() };
        let mut handle = service::spawn(BusConsumer::new("keys", bus.clone(), ["t"], keys.clone()));
        bus.publish(vec![
            BusMessage::new("t", "poison", vec![]),
            BusMessage::new("t", "ok", vec![]),
        ])
        .await
        .unwrap();
        // The first message is refused three times and dead-lettered; the fourth refusal hits the
        // second message, whose second attempt succeeds.
        tokio::time::timeout(Duration::from_secs(5), async {
            while keys.seen.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(*keys.seen.lock().unwrap(), ["ok"]);
        let dead = bus.messages("t-dlq");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].key, "poison");
        assert!(handle.wait_until(|health| health.caught_up).await.caught_up);
        handle.stop().await.unwrap();
    }

    #[tokio::test]
    async fn stopping_leaves_what_was_not_handled_to_the_next_member() {
        let bus = InMemoryBus::new();
        bus.publish((0..3).map(|n| BusMessage::new("t", format!("k{n}"), vec![])).collect())
            .await
            .unwrap();
        let first = Keys::default();
        let handle = service::spawn(BusConsumer::new("a", bus.clone(), ["t"], first.clone()));
        drop(handle);
        tokio::task::yield_now().await;
        let second = Keys::default();
        let handle = service::spawn(BusConsumer::new("b", bus.clone(), ["t"], second.clone()));
        tokio::time::timeout(Duration::from_secs(5), async {
            while first.seen.lock().unwrap().len() + second.seen.lock().unwrap().len() < 3 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap();
        let mut all = first.seen.lock().unwrap().clone();
        all.extend(second.seen.lock().unwrap().iter().cloned());
        all.sort();
        assert_eq!(all, ["k0", "k1", "k2"], "each handled once, none lost");
        handle.stop().await.unwrap();
    }

    #[derive(Clone, Default)]
    struct Positions(Arc<Mutex<Vec<u64>>>);

    impl EventHandler for Positions {
        type Error = std::convert::Infallible;

        async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), Self::Error> {
            self.0.lock().unwrap().extend(events.iter().map(|event| event.stream_version.get()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn events_feeds_an_event_handler_and_refuses_what_is_not_an_event() {
        let policy = RedeliveryPolicy::default().retry(Backoff::immediate(1));
        let bus = InMemoryBus::new().with_redelivery(policy);
        let positions = Positions::default();
        let handle = service::spawn(BusConsumer::new(
            "events",
            bus.clone(),
            ["order-events"],
            Events(positions.clone()),
        ));
        let event = RecordedEvent {
            position: crate::Position::new(1, 1),
            stream_id: crate::StreamId::new("order", 1).unwrap(),
            stream_version: crate::Version(1),
            event_id: uuid::Uuid::now_v7(),
            name: "order.placed".into(),
            version: 1,
            format: "raw".into(),
            payload: vec![],
            metadata: crate::EventMetadata::new_flow(chrono::Utc::now()),
            recorded_at: chrono::Utc::now(),
        };
        bus.publish(vec![
            BusMessage::new("order-events", "order-1", b"not an event".to_vec()),
            BusMessage::from_event(&event),
        ])
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while positions.0.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(*positions.0.lock().unwrap(), [1]);
        let dead = bus.messages("order-events-dlq");
        assert_eq!(dead.len(), 1);
        let error = dead[0].header(crate::bus::headers::DLQ_ERROR).unwrap();
        assert!(String::from_utf8_lossy(error).contains("does not carry an event"));
        handle.stop().await.unwrap();
    }
}
