//! Commands across the bus: a saga dispatching through `BusDispatcher` to a `CommandService`
//! that runs on another runtime (as it would in another process), on the in-memory bus.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use composable::backoff::Backoff;
use composable::breaker::{BreakerError, BreakerPolicy, BreakerState, CircuitBreaker};
use composable::bus::{BusMessage, EventBus, InMemoryBus, RedeliveryPolicy};
use composable::command::CommandCodec;
use composable::command_bus::{
    BusDispatcher, CommandBusError, CommandMessage, CommandReply, CommandService, ReplyOutcome,
    command_topic, headers,
};
use composable::dispatch::{DispatchError, Dispatcher, LocalDispatcher};
use composable::event_store::EventStoreError;
use composable::saga::{Dispatch, InMemoryTimerStore, SagaError, SagaStatus};
use composable::testing::HookedStore;
use composable::{
    AggregateRunner, Bincode, CommandContext, EventStore, InMemoryEventStore, RecordedEvent,
    SagaRunner, StreamId, TestClock, Version, aggregate, apply, command, compensate, event, saga,
    start, step,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

// ---- Two aggregates and a saga between them -------------------------------------------------

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: String,
    pub card: String,
}

#[event(name = "order.confirmed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderConfirmed;

#[event(name = "order.cancelled", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub order_id: String,
    pub card: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmOrder;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelOrder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    #[default]
    New,
    Placed,
    Confirmed,
    Cancelled,
}

#[derive(Debug, thiserror::Error)]
#[error("the order is {0:?}")]
pub struct WrongStatus(Status);

#[derive(Debug, Default)]
pub struct Order {
    status: Status,
}

#[aggregate(stream = "order")]
impl Order {
    #[command]
    fn place(&self, command: PlaceOrder) -> Result<OrderPlaced, WrongStatus> {
        match self.status {
            Status::New => Ok(OrderPlaced { order_id: command.order_id, card: command.card }),
            other => Err(WrongStatus(other)),
        }
    }

    #[command]
    fn confirm(&self, _command: ConfirmOrder) -> Result<OrderConfirmed, WrongStatus> {
        match self.status {
            Status::Placed => Ok(OrderConfirmed),
            other => Err(WrongStatus(other)),
        }
    }

    #[command]
    fn cancel(&self, _command: CancelOrder) -> Result<OrderCancelled, WrongStatus> {
        match self.status {
            Status::Placed => Ok(OrderCancelled),
            other => Err(WrongStatus(other)),
        }
    }

    #[apply]
    fn placed(&mut self, _event: &OrderPlaced) {
        self.status = Status::Placed;
    }

    #[apply]
    fn confirmed(&mut self, _event: &OrderConfirmed) {
        self.status = Status::Confirmed;
    }

    #[apply]
    fn cancelled(&mut self, _event: &OrderCancelled) {
        self.status = Status::Cancelled;
    }
}

#[event(name = "payment.captured", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    pub order_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    pub order_id: String,
    pub card: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("the card was declined")]
    Declined,
    #[error("the payment was already captured")]
    AlreadyCaptured,
}

#[derive(Debug, Default)]
pub struct Payment {
    captured: bool,
}

#[aggregate(stream = "payment")]
impl Payment {
    #[command]
    fn charge(&self, command: Charge) -> Result<PaymentCaptured, PaymentError> {
        if self.captured {
            return Err(PaymentError::AlreadyCaptured);
        }
        if command.card == "declined" {
            return Err(PaymentError::Declined);
        }
        Ok(PaymentCaptured { order_id: command.order_id })
    }

    #[apply]
    fn captured(&mut self, _event: &PaymentCaptured) {
        self.captured = true;
    }
}

#[derive(Debug, Default)]
pub struct Checkout {
    order_id: String,
}

#[saga(name = "checkout", key = order_id)]
impl Checkout {
    #[start(timeout = "1m")]
    fn order_placed(&mut self, event: &OrderPlaced) -> Dispatch {
        self.order_id.clone_from(&event.order_id);
        let charge = Charge { order_id: event.order_id.clone(), card: event.card.clone() };
        Dispatch::to::<Payment>(&event.order_id, charge)
    }

    #[step(end)]
    fn payment_captured(&mut self, _event: &PaymentCaptured) -> Dispatch {
        Dispatch::to::<Order>(&self.order_id, ConfirmOrder)
    }

    #[compensate(order_placed)]
    fn cancel_order(&self) -> Dispatch {
        Dispatch::to::<Order>(&self.order_id, CancelOrder)
    }
}

// ---- Wiring ----------------------------------------------------------------------------------

const REPLIES: &str = "checkout-replies";

/// A store whose appends to saga streams fail while `crash` is set: the saga "crashes" after
/// dispatching and before recording.
#[derive(Clone)]
struct CrashingStore {
    store: HookedStore<InMemoryEventStore>,
    crash: Arc<AtomicBool>,
}

impl CrashingStore {
    fn new(inner: InMemoryEventStore) -> Self {
        let crash = Arc::new(AtomicBool::new(false));
        let crashed = Arc::clone(&crash);
        let store = HookedStore::new(inner).before_append(move |stream, _| {
            let crashed = stream.category().starts_with("saga.") && crashed.load(Ordering::SeqCst);
            async move {
                if crashed {
                    return Err(EventStoreError::Unavailable {
                        operation: "append",
                        source: "the saga's process died".into(),
                    });
                }
                Ok(())
            }
        });
        Self { store, crash }
    }
}

/// The aggregates' side: runners on `store`, served from `bus`.
struct Aggregates {
    orders: Arc<AggregateRunner<Order, InMemoryEventStore>>,
    payments: Arc<AggregateRunner<Payment, InMemoryEventStore>>,
}

impl Aggregates {
    fn new(store: &InMemoryEventStore) -> Self {
        Self {
            orders: Arc::new(AggregateRunner::new(store.clone(), ())),
            payments: Arc::new(AggregateRunner::new(store.clone(), ())),
        }
    }

    fn service(&self, bus: &InMemoryBus) -> CommandService<InMemoryBus> {
        CommandService::new(bus.clone(), Bincode)
            .route(Arc::clone(&self.orders))
            .route(Arc::clone(&self.payments))
    }
}

/// A command service on a runtime of its own, in a thread of its own.
struct Remote {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<(), composable::service::ServiceError>>,
}

impl Remote {
    fn start(service: CommandService<InMemoryBus>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the command service");
            runtime.block_on(async {
                let handle = composable::service::spawn(service);
                let _ = stopped.await;
                handle.stop().await
            })
        });
        Self { stop, thread }
    }

    fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().expect("the service thread").expect("the service ran");
    }
}

fn dispatcher(bus: &InMemoryBus) -> BusDispatcher<InMemoryBus> {
    BusDispatcher::new(bus.clone(), Bincode, REPLIES)
        .route::<Order>()
        .route::<Payment>()
        .with_timeout(Duration::from_secs(10))
}

type Saga<S, D> = SagaRunner<Checkout, S, D, InMemoryTimerStore>;

fn saga<S: EventStore, D: Dispatcher>(store: S, dispatcher: D) -> Saga<S, D> {
    SagaRunner::new(store, dispatcher, InMemoryTimerStore::new())
}

async fn read(store: &InMemoryEventStore, stream: &str) -> Vec<RecordedEvent> {
    use futures::TryStreamExt;
    let stream = StreamId::parse(stream).expect("a stream id");
    store.read_stream(&stream, Version::ZERO).try_collect().await.expect("read the stream")
}

async fn first_event(store: &InMemoryEventStore, stream: &str) -> RecordedEvent {
    read(store, stream).await.into_iter().next().expect("an event")
}

async fn count(store: &InMemoryEventStore, stream: &str, name: &str) -> usize {
    read(store, stream).await.iter().filter(|event| event.name == name).count()
}

/// Places order `order_id` directly (the shop front) and returns its `order.placed` event.
async fn place(store: &InMemoryEventStore, order_id: &str, card: &str) -> RecordedEvent {
    let orders = AggregateRunner::<Order, _>::new(store.clone(), ());
    let command = PlaceOrder { order_id: order_id.into(), card: card.into() };
    orders.execute(order_id, command).await.expect("place the order");
    first_event(store, &format!("order-{order_id}")).await
}

fn replies(bus: &InMemoryBus) -> Vec<CommandReply> {
    bus.messages(REPLIES)
        .iter()
        .map(|message| CommandReply::from_message(message).expect("a reply"))
        .collect()
}

/// The replies, once there are at least `count` of them (waiting up to 10 s).
async fn replies_once_there_are(bus: &InMemoryBus, count: usize) -> Vec<CommandReply> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let replies = replies(bus);
        if replies.len() >= count || tokio::time::Instant::now() >= deadline {
            assert_eq!(replies.len(), count, "replies after 10 s");
            return replies;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn outcomes(bus: &InMemoryBus) -> Vec<ReplyOutcome> {
    replies(bus).into_iter().map(|reply| reply.outcome).collect()
}

// ---- Tests -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_drives_aggregates_on_another_runtime_through_the_bus() {
    let store = InMemoryEventStore::new();
    let bus = InMemoryBus::new();
    let aggregates = Aggregates::new(&store);
    let remote = Remote::start(aggregates.service(&bus));
    let saga = saga(store.clone(), dispatcher(&bus));

    place(&store, "7", "visa").await;
    let progress = saga.run_until_idle().await.expect("run the saga");

    let steps: Vec<&str> = progress.iter().map(|step| step.step).collect();
    assert_eq!(steps, ["order_placed", "payment_captured"]);
    assert_eq!(progress[1].status, SagaStatus::Completed);
    assert_eq!(aggregates.orders.load("7").await.unwrap().state.status, Status::Confirmed);
    assert!(aggregates.payments.load("7").await.unwrap().state.captured);

    // The commands crossed the bus, keyed by their target, with the flow in their headers.
    let charges = bus.messages(&command_topic("payment"));
    assert_eq!(charges.len(), 1);
    let charge = CommandMessage::from_message(&charges[0]).unwrap();
    assert_eq!(charges[0].key, "payment-7");
    assert_eq!((charge.name.as_str(), charge.reply_to.as_str()), ("Charge", REPLIES));
    let decoded = PaymentCommand::decode(&Bincode, &charge.name, &charge.payload).unwrap();
    assert_eq!(
        decoded,
        PaymentCommand::Charge(Charge { order_id: "7".into(), card: "visa".into() })
    );
    let placed = first_event(&store, "order-7").await;
    assert_eq!(charge.causation_id, placed.event_id);
    assert_eq!(charge.correlation_id, placed.metadata.correlation_id);
    // The payment's event carries the command's id as its cause, and an id derived from it.
    let captured = first_event(&store, "payment-7").await;
    assert_eq!(captured.event_id, composable::command::event_id(charge.command_id, 0));
    assert_eq!(captured.metadata.correlation_id, placed.metadata.correlation_id);
    assert_eq!(outcomes(&bus), [ReplyOutcome::Accepted, ReplyOutcome::Accepted]);

    remote.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_over_the_bus_makes_the_saga_compensate() {
    let store = InMemoryEventStore::new();
    let bus = InMemoryBus::new();
    let aggregates = Aggregates::new(&store);
    let remote = Remote::start(aggregates.service(&bus));
    let saga = saga(store.clone(), dispatcher(&bus));

    place(&store, "8", "declined").await;
    let progress = saga.run_until_idle().await.expect("run the saga");

    assert_eq!(progress.len(), 1);
    let failure = progress[0].failure.as_deref().expect("the step failed");
    assert!(failure.contains("the card was declined"), "{failure}");
    assert_eq!(progress[0].status, SagaStatus::Compensated);
    assert_eq!(progress[0].compensations, [Dispatch::to::<Order>("8", CancelOrder)]);
    assert_eq!(aggregates.orders.load("8").await.unwrap().state.status, Status::Cancelled);
    assert_eq!(
        outcomes(&bus),
        [ReplyOutcome::Rejected { reason: "the card was declined".into() }, ReplyOutcome::Accepted]
    );

    remote.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_command_delivered_twice_takes_effect_once_and_is_answered_as_a_duplicate() {
    let store = InMemoryEventStore::new();
    let bus = InMemoryBus::new();
    let aggregates = Aggregates::new(&store);
    let remote = Remote::start(aggregates.service(&bus));
    let dispatcher = dispatcher(&bus);

    let context = CommandContext::new_flow().with_command_id(Uuid::now_v7());
    let charge = Dispatch::to::<Payment>("9", Charge { order_id: "9".into(), card: "visa".into() });
    dispatcher.dispatch(charge.clone(), context).await.expect("the first delivery");
    // The bus delivers the same message again (a redelivery, a retried publish).
    let message = bus.messages(&command_topic("payment")).remove(0);
    bus.publish(vec![message]).await.unwrap();
    // And the sender sends it again (a retried saga step).
    dispatcher.dispatch(charge, context).await.expect("a duplicate is a success");

    assert_eq!(count(&store, "payment-9", "payment.captured").await, 1);
    // The second dispatch may be answered by the reply to the redelivery, which carries the same
    // command id; the reply to its own message follows.
    let replies = replies_once_there_are(&bus, 3).await;
    assert!(replies.iter().all(|reply| Some(reply.command_id) == context.command_id));
    assert_eq!(
        replies.into_iter().map(|reply| reply.outcome).collect::<Vec<_>>(),
        [ReplyOutcome::Accepted, ReplyOutcome::Duplicate, ReplyOutcome::Duplicate]
    );

    remote.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_crashing_between_dispatch_and_record_completes_without_compensating() {
    let store = InMemoryEventStore::new();
    let bus = InMemoryBus::new();
    let aggregates = Aggregates::new(&store);
    let remote = Remote::start(aggregates.service(&bus));
    let saga_store = CrashingStore::new(store.clone());
    let saga = saga(saga_store.store.clone(), dispatcher(&bus));

    let placed = place(&store, "10", "visa").await;
    saga_store.crash.store(true, Ordering::SeqCst);
    let crashed = saga.handle(&placed).await.expect_err("the record could not be written");
    assert!(matches!(crashed, SagaError::Store(_)), "{crashed}");
    assert!(aggregates.payments.load("10").await.unwrap().state.captured, "the charge went out");
    assert!(saga.load("10").await.unwrap().is_none(), "but nothing was recorded");

    // The restarted saga gets the event again and re-sends the charge with the same id; the
    // payment, which would refuse a second capture, answers it as a duplicate.
    saga_store.crash.store(false, Ordering::SeqCst);
    let progress = saga.handle(&placed).await.expect("handled").expect("a step ran");
    assert_eq!(progress.failure, None);
    assert!(progress.compensations.is_empty());
    let done = saga.run_until_idle().await.expect("run the saga");
    assert_eq!(done.last().map(|step| step.status), Some(SagaStatus::Completed));

    assert_eq!(aggregates.orders.load("10").await.unwrap().state.status, Status::Confirmed);
    assert_eq!(count(&store, "payment-10", "payment.captured").await, 1);
    assert_eq!(
        outcomes(&bus),
        [ReplyOutcome::Accepted, ReplyOutcome::Duplicate, ReplyOutcome::Accepted]
    );

    remote.stop();
}

#[tokio::test]
async fn in_process_too_a_saga_crashing_between_dispatch_and_record_does_not_compensate() {
    let store = InMemoryEventStore::new();
    let aggregates = Aggregates::new(&store);
    let dispatcher = LocalDispatcher::new()
        .route(Arc::clone(&aggregates.orders))
        .route(Arc::clone(&aggregates.payments));
    let saga_store = CrashingStore::new(store.clone());
    let saga = saga(saga_store.store.clone(), dispatcher);

    let placed = place(&store, "11", "visa").await;
    saga_store.crash.store(true, Ordering::SeqCst);
    saga.handle(&placed).await.expect_err("the record could not be written");
    saga_store.crash.store(false, Ordering::SeqCst);
    saga.handle(&placed).await.expect("handled again");
    let done = saga.run_until_idle().await.expect("run the saga");

    assert_eq!(done.last().map(|step| step.status), Some(SagaStatus::Completed));
    assert_eq!(aggregates.orders.load("11").await.unwrap().state.status, Status::Confirmed);
    assert_eq!(count(&store, "payment-11", "payment.captured").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reply_in_time_is_a_failure_that_records_nothing_and_the_retry_is_deduplicated() {
    let store = InMemoryEventStore::new();
    let bus = InMemoryBus::new();
    let aggregates = Aggregates::new(&store);
    let clock = TestClock::new();
    let impatient =
        dispatcher(&bus).with_timeout(Duration::from_secs(30)).with_clock(clock.clone());
    let saga = saga(store.clone(), impatient);

    // No service runs: the charge waits on its topic, and no reply comes; the wait is on the
    // dispatcher's clock, which the test moves past the timeout.
    let placed = place(&store, "12", "visa").await;
    let (handled, ()) = tokio::join!(saga.handle(&placed), async {
        while clock.pending_sleeps() == 0 {
            tokio::task::yield_now().await;
        }
        clock.advance(Duration::from_secs(30)).await;
    });
    let error = handled.expect_err("no reply");
    match &error {
        SagaError::Dispatch(DispatchError::Failed { aggregate: "payment", source, .. }) => {
            let source = source.downcast_ref::<CommandBusError>().expect("a command bus error");
            assert!(matches!(source, CommandBusError::Timeout { .. }), "{source}");
        }
        other => panic!("expected a failed dispatch, got {other}"),
    }
    assert!(saga.load("12").await.unwrap().is_none(), "nothing was recorded");

    // The service comes up and serves the waiting charge; the retried step sends it again.
    let remote = Remote::start(aggregates.service(&bus));
    let progress = saga.handle(&placed).await.expect("handled").expect("a step ran");
    assert_eq!(progress.failure, None);
    saga.run_until_idle().await.expect("run the saga");
    assert_eq!(aggregates.orders.load("12").await.unwrap().state.status, Status::Confirmed);
    assert_eq!(count(&store, "payment-12", "payment.captured").await, 1);
    let charges: Vec<Uuid> = bus
        .messages(&command_topic("payment"))
        .iter()
        .map(|message| CommandMessage::from_message(message).unwrap().command_id)
        .collect();
    assert_eq!(charges.len(), 2);
    assert_eq!(charges[0], charges[1], "the retry re-sent the same command id");

    remote.stop();
}

#[tokio::test]
async fn an_aggregate_without_a_route_is_no_route() {
    let bus = InMemoryBus::new();
    let dispatcher = BusDispatcher::new(bus, Bincode, REPLIES).route::<Order>();
    let charge = Dispatch::to::<Payment>("1", Charge { order_id: "1".into(), card: "visa".into() });
    let error = dispatcher.dispatch(charge, CommandContext::new_flow()).await.unwrap_err();
    assert!(matches!(error, DispatchError::NoRoute { aggregate: "payment" }), "{error}");
}

fn command_message(name: &str, payload: Vec<u8>) -> CommandMessage {
    CommandMessage {
        command_id: Uuid::now_v7(),
        aggregate: "payment".into(),
        aggregate_id: "13".into(),
        name: name.into(),
        format: Bincode::FORMAT.into(),
        correlation_id: Uuid::now_v7(),
        causation_id: Uuid::now_v7(),
        reply_to: REPLIES.into(),
        trace: None,
        payload,
    }
}

#[tokio::test]
async fn unknown_and_undecodable_commands_get_a_failed_reply_and_are_acknowledged() {
    let store = InMemoryEventStore::new();
    let bus = InMemoryBus::new();
    let service = Aggregates::new(&store).service(&bus);
    let mut subscription = bus.subscribe(Some("test"), &[&command_topic("payment")]).await.unwrap();

    let charge = Charge { order_id: "13".into(), card: "visa".into() };
    let bytes = CommandCodec::<Bincode>::encode(&PaymentCommand::Charge(charge), &Bincode).unwrap();
    let unknown = command_message("Refund", bytes);
    let corrupt = command_message("Charge", vec![0xff, 0xff, 0xff]);
    let mut other_aggregate = command_message("Charge", vec![]);
    other_aggregate.aggregate = "shipping".into();
    let mut no_name = command_message("Charge", vec![]).to_message();
    no_name.headers.retain(|(name, _)| name != headers::COMMAND_NAME);
    no_name.topic = command_topic("payment");
    bus.publish(vec![
        unknown.to_message(),
        corrupt.to_message(),
        // On the payment topic and key, so the four keep their order.
        BusMessage {
            topic: command_topic("payment"),
            key: "payment-13".into(),
            ..other_aggregate.to_message()
        },
        no_name,
    ])
    .await
    .unwrap();

    let mut reasons = Vec::new();
    for _ in 0..4 {
        let delivery = subscription.next().await.unwrap().unwrap();
        let reply = service.serve(delivery).await.expect("answered");
        match reply.outcome {
            ReplyOutcome::Failed { reason } => reasons.push(reason),
            other => panic!("expected a failed reply, got {other}"),
        }
    }
    assert!(
        reasons[0].contains("unknown command `Refund`: expected one of [\"Charge\"]"),
        "{}",
        reasons[0]
    );
    assert!(reasons[1].contains("command `Charge`: bincode2 could not decode"), "{}", reasons[1]);
    assert!(reasons[2].contains("does not host aggregate `shipping`"), "{}", reasons[2]);
    assert!(reasons[3].contains("no `command-name` header"), "{}", reasons[3]);
    assert_eq!(count(&store, "payment-13", "payment.captured").await, 0);
    // Each was acknowledged: nothing is delivered again.
    let again = tokio::time::timeout(Duration::from_millis(200), subscription.next()).await;
    assert!(again.is_err(), "nothing is redelivered: {again:?}");
}

#[tokio::test]
async fn a_command_that_cannot_be_answered_is_nacked_into_the_dead_letter_topic() {
    let store = InMemoryEventStore::new();
    let policy = RedeliveryPolicy::default()
        .retry(Backoff::exponential(Duration::from_millis(1)).attempts(2));
    let bus = InMemoryBus::new().with_redelivery(policy);
    let remote = Remote::start(Aggregates::new(&store).service(&bus));

    let mut message = command_message("Charge", vec![]).to_message();
    message.headers.retain(|(name, _)| name != headers::REPLY_TO);
    bus.publish(vec![message]).await.unwrap();

    let dead_letters = "payment-commands-dlq";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while bus.messages(dead_letters).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no dead letter within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let letter = &bus.messages(dead_letters)[0];
    let error = String::from_utf8_lossy(letter.header("dlq-error").unwrap()).into_owned();
    assert!(error.contains("no `reply-to` header"), "{error}");
    assert!(bus.messages(REPLIES).is_empty());

    remote.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_behind_a_breaker_fails_fast_while_the_service_is_down_and_recovers_after_a_probe()
 {
    let store = InMemoryEventStore::new();
    let bus = InMemoryBus::new();
    let aggregates = Aggregates::new(&store);
    let clock = TestClock::new();
    let breaker = CircuitBreaker::new("dispatch.checkout", BreakerPolicy::default().window(2))
        .with_clock(clock.clone());
    let dispatcher = dispatcher(&bus)
        .with_timeout(Duration::from_secs(30))
        .with_clock(clock.clone())
        .with_breaker(breaker.clone());
    let charge = |order: &str| {
        let command = Charge { order_id: order.into(), card: "visa".into() };
        (Dispatch::to::<Payment>(order, command), CommandContext::new_flow())
    };

    // No service runs: two sends time out, and the breaker opens.
    for order in ["1", "2"] {
        let (dispatch, context) = charge(order);
        let (sent, ()) = tokio::join!(dispatcher.dispatch(dispatch, context), async {
            while clock.pending_sleeps() == 0 {
                tokio::task::yield_now().await;
            }
            clock.advance(Duration::from_secs(30)).await;
        });
        assert!(matches!(sent, Err(DispatchError::Failed { .. })), "{sent:?}");
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let (dispatch, context) = charge("3");
    match dispatcher.dispatch(dispatch, context).await {
        Err(DispatchError::Failed { source, .. }) => {
            let open = source.downcast_ref::<BreakerError<CommandBusError>>();
            assert!(matches!(open, Some(BreakerError::Open { .. })), "{source}");
        }
        other => panic!("expected a fast failure, got {other:?}"),
    }
    assert_eq!(bus.messages(&command_topic("payment")).len(), 2, "the third was never sent");

    // The service comes back; after the open period a probe gets through and closes it.
    let remote = Remote::start(aggregates.service(&bus));
    clock.advance(Duration::from_secs(30)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    let (dispatch, context) = charge("4");
    dispatcher.dispatch(dispatch, context).await.expect("the probe is answered");
    assert_eq!(breaker.state(), BreakerState::Closed);
    remote.stop();
}
