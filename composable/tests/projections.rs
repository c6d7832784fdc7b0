//! Projections through the host: a read model of orders per customer on the in-memory document
//! store, kept with its checkpoint so a restart neither loses nor repeats an event; a query
//! waiting for a command's token; the build check; an event that cannot be decoded stops the
//! projection instead of being skipped.

use std::time::Duration;

use composable::host::{App, HostError};
use std::sync::atomic::{AtomicBool, Ordering};

use composable::projection::{
    DocumentBatch, DocumentError, InMemoryDocuments, Lag, OnFailure, ProjectionRunner,
    ProjectionState, ReadStore,
};
use composable::service::ServiceState;
use composable::{
    AggregateRunner, Bincode, Codec, EventMetadata, EventStore, ExpectedVersion,
    InMemoryEventStore, NewEvent, StreamId, aggregate, apply, command, event, project, projection,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    pub customer: String,
    pub total: u64,
}

#[event(name = "order.shipped", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipped;

#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub customer: String,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ship;

#[derive(Debug, Default)]
pub struct Order;

#[aggregate(stream = "order")]
impl Order {
    #[command]
    fn place(&self, command: Place) -> Placed {
        Placed { customer: command.customer, total: command.total }
    }

    #[command]
    fn ship(&self, _command: Ship) -> Shipped {
        Shipped
    }

    #[apply]
    fn placed(&mut self, _event: &Placed) {}

    #[apply]
    fn shipped(&mut self, _event: &Shipped) {}
}

/// Per customer: how many orders, and how much in all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spent {
    orders: u64,
    total: u64,
}

/// Orders per customer; a shipment is not among its events, and still moves it on.
struct Spending;

#[projection(name = "spending", store = InMemoryDocuments)]
impl Spending {
    #[project]
    fn placed(&self, batch: &mut DocumentBatch, placed: &Placed) -> Result<(), DocumentError> {
        let mut spent: Spent = batch.get("spent", &placed.customer)?.unwrap_or_default();
        spent.orders += 1;
        spent.total += placed.total;
        batch.put("spent", &placed.customer, &spent)
    }
}

fn place(customer: &str, total: u64) -> Place {
    Place { customer: customer.into(), total }
}

fn host(
    store: &InMemoryEventStore,
    orders: &Arc<AggregateRunner<Order, InMemoryEventStore>>,
    read: &InMemoryDocuments,
) -> composable::host::RunningApp<InMemoryEventStore> {
    App::in_process("shop", store.clone())
        .aggregate(orders)
        .projection(Spending, read.clone())
        .build()
        .expect("the wiring is complete")
        .start()
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_query_sees_a_command_once_the_projection_reached_its_token() {
    let store = InMemoryEventStore::new();
    let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
    let read = InMemoryDocuments::new();
    let running = host(&store, &orders, &read);
    let view = running.service("projection.spending").expect("the projection runs");

    let placed = orders.execute("o1", place("ada", 300)).await.unwrap();
    view.reached(placed.token.unwrap(), WAIT).await.expect("the projection caught up");
    assert_eq!(read.get::<Spent>("spent", "ada").unwrap(), Some(Spent { orders: 1, total: 300 }));

    // An event it ignores still moves it on: the wait for a shipment's token ends.
    let shipped = orders.execute("o1", Ship).await.unwrap();
    view.reached(shipped.token.unwrap(), WAIT).await.expect("moved past the shipment");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_projection_neither_loses_nor_repeats_an_event() {
    let store = InMemoryEventStore::new();
    let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
    let read = InMemoryDocuments::new();
    let running = host(&store, &orders, &read);
    let first = orders.execute("o1", place("ada", 100)).await.unwrap().token.unwrap();
    orders.execute("o2", place("bob", 5)).await.unwrap();
    running.service("projection.spending").unwrap().reached(first, WAIT).await.unwrap();
    running.stop().await.unwrap();

    // While it is down, more orders; then a new process over the same read store.
    orders.execute("o3", place("ada", 20)).await.unwrap();
    let last = orders.execute("o4", place("cy", 1)).await.unwrap().token.unwrap();
    let restarted = host(&store, &orders, &read);
    restarted.service("projection.spending").unwrap().reached(last, WAIT).await.unwrap();
    let spent = read.list::<Spent>("spent", "").unwrap();
    assert_eq!(
        spent,
        [
            ("ada".to_owned(), Spent { orders: 2, total: 120 }),
            ("bob".to_owned(), Spent { orders: 1, total: 5 }),
            ("cy".to_owned(), Spent { orders: 1, total: 1 }),
        ]
    );
    restarted.stop().await.unwrap();
}

fn corrupt_placed() -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        name: "order.placed".into(),
        version: 1,
        format: "bincode".into(),
        payload: vec![0xff; 3],
        metadata: EventMetadata::new_flow(chrono::Utc::now()),
    }
}

#[tokio::test]
async fn an_event_that_cannot_be_decoded_stops_a_projection_told_to_stop() {
    let store = InMemoryEventStore::new();
    let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
    let read = InMemoryDocuments::new();
    let running = App::in_process("shop", store.clone())
        .aggregate(&orders)
        .projection_runner(
            ProjectionRunner::new(Spending, read.clone()).on_failure(OnFailure::Stop),
        )
        .build()
        .expect("the wiring is complete")
        .start();
    let stream = StreamId::new("order", "broken").unwrap();
    store.append(&stream, ExpectedVersion::Any, vec![corrupt_placed()]).await.unwrap();
    let failure = tokio::time::timeout(WAIT, running.failure()).await.expect("it stops");
    assert_eq!(failure.name, "projection.spending");
    let ServiceState::Failed(reason) = failure.health.state else { unreachable!() };
    assert!(reason.contains("cannot decode"), "{reason}");
    assert_eq!(read.list::<Spent>("spent", "").unwrap(), [], "nothing applied");
}

#[test]
fn a_projection_of_events_nobody_emits_is_refused_when_built() {
    let store = InMemoryEventStore::new();
    let error = App::in_process("shop", store)
        .projection(Spending, InMemoryDocuments::new())
        .build()
        .unwrap_err();
    assert!(
        matches!(error, HostError::UnpublishedProjectionInput { projection: "spending", .. }),
        "{error}"
    );
}

#[test]
fn collection_names_are_checked() {
    let read = InMemoryDocuments::new();
    assert!(matches!(
        read.get::<u64>("Spent; DROP", "k"),
        Err(DocumentError::InvalidCollection(_))
    ));
    assert!(read.get::<u64>("", "k").is_err());
    assert!(read.get::<u64>(&"x".repeat(64), "k").is_err());
    assert_eq!(read.get::<u64>("spent", "k").unwrap(), None);
}

#[tokio::test]
async fn an_event_that_cannot_be_decoded_is_parked_with_the_rest_of_its_stream() {
    let store = InMemoryEventStore::new();
    let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
    let read = InMemoryDocuments::new();
    let running = host(&store, &orders, &read);
    let stream = StreamId::new("order", "broken").unwrap();
    store.append(&stream, ExpectedVersion::Any, vec![corrupt_placed()]).await.unwrap();
    // The same stream again (written by hand: the aggregate cannot load it either), then
    // another one: the first waits behind the parked event.
    let good = NewEvent {
        payload: Bincode.encode(&Placed { customer: "eve".into(), total: 1 }).unwrap(),
        format: Bincode::FORMAT.into(),
        version: 1,
        ..corrupt_placed()
    };
    store.append(&stream, ExpectedVersion::Any, vec![good]).await.unwrap();
    let token = orders.execute("o1", place("ada", 2)).await.unwrap().token.unwrap();
    running.service("projection.spending").unwrap().reached(token, WAIT).await.unwrap();

    assert_eq!(
        read.list::<Spent>("spent", "").unwrap(),
        [("ada".into(), Spent { orders: 1, total: 2 })]
    );
    let letters = read.dead_letters("projection.spending").await.unwrap();
    assert_eq!(letters.len(), 2, "the corrupt event and the one behind it");
    assert!(letters[0].reason.contains("cannot decode"), "{}", letters[0].reason);
    assert!(letters[1].reason.contains("waits behind"), "{}", letters[1].reason);
    assert!(running.is_healthy(), "the projection goes on");
    running.stop().await.unwrap();
}

/// Spending, failing for one customer while `broken` is set.
struct Flaky {
    broken: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
enum FlakyError {
    #[error("mallory's orders cannot be counted yet")]
    Mallory,
    #[error(transparent)]
    Documents(#[from] DocumentError),
}

#[projection(name = "flaky", store = InMemoryDocuments)]
impl Flaky {
    #[project]
    fn placed(&self, batch: &mut DocumentBatch, placed: &Placed) -> Result<(), FlakyError> {
        if placed.customer == "mallory" && self.broken.load(Ordering::SeqCst) {
            return Err(FlakyError::Mallory);
        }
        let mut spent: Spent = batch.get("spent", &placed.customer)?.unwrap_or_default();
        spent.orders += 1;
        spent.total += placed.total;
        Ok(batch.put("spent", &placed.customer, &spent)?)
    }
}

#[tokio::test]
async fn a_failing_event_is_retried_then_parked_and_replayed_in_order_once_fixed() {
    let store = InMemoryEventStore::new();
    let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
    let read = InMemoryDocuments::new();
    let broken = Arc::new(AtomicBool::new(true));
    let runner =
        ProjectionRunner::new(Flaky { broken: Arc::clone(&broken) }, read.clone()).attempts(3);
    let running = App::in_process("shop", store.clone())
        .aggregate(&orders)
        .projection_runner(runner)
        .build()
        .unwrap()
        .start();
    orders.execute("m1", place("mallory", 10)).await.unwrap();
    orders.execute("m1", Ship).await.unwrap();
    orders.execute("o1", place("ada", 1)).await.unwrap();
    let token = orders.execute("o2", place("bob", 2)).await.unwrap().token.unwrap();
    running
        .service("projection.flaky")
        .unwrap()
        .reached(token, Duration::from_secs(60))
        .await
        .unwrap();

    let letters = read.dead_letters("projection.flaky").await.unwrap();
    let names: Vec<&str> = letters.iter().map(|letter| letter.event.name.as_str()).collect();
    assert_eq!(names, ["order.placed", "order.shipped"], "the failing event and its stream's next");
    assert!(letters[0].reason.contains("cannot be counted"), "{}", letters[0].reason);
    assert_eq!(read.get::<Spent>("spent", "ada").unwrap(), Some(Spent { orders: 1, total: 1 }));
    assert_eq!(read.get::<Spent>("spent", "mallory").unwrap(), None);

    // While parked, the stream's new events queue behind.
    let token = orders.execute("m1", place("mallory", 5)).await.unwrap().token.unwrap();
    running
        .service("projection.flaky")
        .unwrap()
        .reached(token, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(read.dead_letters("projection.flaky").await.unwrap().len(), 3);
    running.stop().await.unwrap();

    // Still broken: the replay leaves the stream as it was.
    let mut replayer = ProjectionRunner::new(Flaky { broken: Arc::clone(&broken) }, read.clone());
    let replayed = replayer.replay_parked().await.unwrap();
    assert_eq!(replayed.applied, 0);
    assert_eq!(replayed.still_parked.len(), 1);
    assert_eq!(read.dead_letters("projection.flaky").await.unwrap().len(), 3);

    // Fixed: applied in order, once.
    broken.store(false, Ordering::SeqCst);
    let replayed = replayer.replay_parked().await.unwrap();
    assert_eq!((replayed.applied, replayed.still_parked.len()), (3, 0));
    assert_eq!(
        read.get::<Spent>("spent", "mallory").unwrap(),
        Some(Spent { orders: 2, total: 15 })
    );
    assert!(read.dead_letters("projection.flaky").await.unwrap().is_empty());
    assert!(read.parked_streams("projection.flaky").await.unwrap().is_empty());
    assert_eq!(replayer.replay_parked().await.unwrap(), Default::default(), "nothing left");
}

#[tokio::test]
async fn every_projection_reports_its_state_and_lag() {
    let store = InMemoryEventStore::new();
    let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
    let read = InMemoryDocuments::new();
    // One that keeps up, one that stops at its first event (mallory's, while broken).
    let stopping =
        ProjectionRunner::new(Flaky { broken: Arc::new(AtomicBool::new(true)) }, read.clone())
            .attempts(1)
            .on_failure(OnFailure::Stop);
    let running = App::in_process("shop", store.clone())
        .aggregate(&orders)
        .projection(Spending, read.clone())
        .projection_runner(stopping)
        .build()
        .unwrap()
        .start();
    orders.execute("m1", place("mallory", 1)).await.unwrap();
    orders.execute("o1", place("ada", 1)).await.unwrap();
    let token = orders.execute("o2", place("bob", 1)).await.unwrap().token.unwrap();
    let spending = running.service("projection.spending").unwrap();
    spending.reached(token, WAIT).await.unwrap();
    tokio::time::timeout(WAIT, running.failure()).await.expect("the flaky one stops");
    spending.watch_health().wait_for(|health| health.caught_up).await.unwrap();

    let statuses = running.projections().await.unwrap();
    let by_name = |name: &str| statuses.iter().find(|status| status.name == name).unwrap().clone();
    let spending = by_name("projection.spending");
    assert_eq!(spending.state, ProjectionState::Running);
    assert_eq!(spending.lag, Lag::default(), "at the head");
    let flaky = by_name("projection.flaky");
    assert!(
        matches!(flaky.state, ProjectionState::Failed(ref error) if error.contains("mallory")),
        "{flaky:?}"
    );
    assert_eq!(flaky.lag.events, 3, "none of the three orders applied");
    running.stop().await.unwrap_err();
}

/// Version 2 of `spending`: totals in cents.
struct SpendingInCents;

#[projection(name = "spending", version = 2, store = InMemoryDocuments)]
impl SpendingInCents {
    #[project]
    fn placed(&self, batch: &mut DocumentBatch, placed: &Placed) -> Result<(), DocumentError> {
        let mut spent: Spent = batch.get("spent", &placed.customer)?.unwrap_or_default();
        spent.orders += 1;
        spent.total += placed.total * 100;
        batch.put("spent", &placed.customer, &spent)
    }
}

#[tokio::test]
async fn a_new_version_takes_over_once_caught_up_and_the_old_one_retires() {
    let store = InMemoryEventStore::new();
    let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
    let read = InMemoryDocuments::new();
    let old = host(&store, &orders, &read);
    orders.execute("o1", place("ada", 3)).await.unwrap();
    let token = orders.execute("o2", place("ada", 4)).await.unwrap().token.unwrap();
    old.service("projection.spending").unwrap().reached(token, WAIT).await.unwrap();
    assert_eq!(read.get::<Spent>("spent", "ada").unwrap(), Some(Spent { orders: 2, total: 7 }));

    // The new version, deployed beside the old one, builds from the start and takes over.
    let new = App::in_process("shop", store.clone())
        .aggregate(&orders)
        .projection(SpendingInCents, read.clone())
        .build()
        .unwrap()
        .start();
    let v2 = new.service("projection.spending.v2").expect("the new version's service");
    v2.watch_health().wait_for(|health| health.caught_up).await.unwrap();
    assert_eq!(read.active_version("spending").await.unwrap(), Some(2));
    assert_eq!(read.get::<Spent>("spent", "ada").unwrap(), Some(Spent { orders: 2, total: 700 }));
    let status = new.projections().await.unwrap().pop().unwrap();
    assert_eq!((status.version, status.serving), (2, Some(2)));
    assert_eq!(status.state, ProjectionState::Running);

    // The old version sees the switch at its next batch, applies nothing, and stops.
    let token = orders.execute("o3", place("ada", 1)).await.unwrap().token.unwrap();
    let mut retired = old.service("projection.spending").unwrap().watch_health();
    let health = tokio::time::timeout(WAIT, retired.wait_for(|health| health.is_finished()))
        .await
        .expect("the old version retires")
        .unwrap()
        .clone();
    assert_eq!(health.state, ServiceState::Stopped, "retired, not failed");
    let statuses = old.projections().await.unwrap();
    assert_eq!((statuses[0].version, statuses[0].serving), (1, Some(2)));
    v2.reached(token, WAIT).await.unwrap();
    assert_eq!(read.get::<Spent>("spent", "ada").unwrap(), Some(Spent { orders: 3, total: 800 }));
    new.stop().await.unwrap();
    old.stop().await.unwrap();
}

/// Written by hand, with a name that cannot name a checkpoint, tables or keys.
struct BadlyNamed;

impl composable::projection::Projection for BadlyNamed {
    const NAME: &'static str = "Orders By Customer";
    type Event = SpendingEvent;
    type Store = InMemoryDocuments;
    type Error = DocumentError;

    async fn apply(
        &self,
        batch: &mut DocumentBatch,
        _event: SpendingEvent,
        envelope: &composable::RecordedEvent,
    ) -> Result<(), DocumentError> {
        batch.put("seen", &envelope.event_id.to_string(), &true)
    }
}

#[tokio::test]
async fn a_hand_written_name_is_checked_when_the_host_is_built_and_by_the_runner() {
    let store = InMemoryEventStore::new();
    let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
    let read = InMemoryDocuments::new();
    let built = App::in_process("shop", store.clone())
        .aggregate(&orders)
        .projection(BadlyNamed, read.clone())
        .build();
    let Err(error) = built else { panic!("a bad name is refused") };
    assert!(
        matches!(&error, HostError::InvalidProjectionName { projection: "Orders By Customer", reason } if reason.contains("lowercase")),
        "{error}"
    );

    // Run without the host, it stops at its first batch, having applied nothing.
    orders.execute("o1", place("ada", 1)).await.unwrap();
    let mut consumer = ProjectionRunner::new(BadlyNamed, read.clone()).consumer(store.clone());
    let error = consumer.catch_up().await.expect_err("a bad name stops the runner");
    assert!(error.to_string().contains("cannot run"), "{error}");
    assert!(read.list::<bool>("seen", "").unwrap().is_empty());
}

#[tokio::test]
async fn a_rebuild_applies_the_log_in_batches_of_the_size_asked_for() {
    let store = InMemoryEventStore::new();
    let orders = AggregateRunner::<Order, _>::new(store.clone(), ());
    for index in 0..10 {
        orders.execute(&format!("o{index}"), place("ada", 10)).await.unwrap();
    }
    let read = InMemoryDocuments::new();
    let mut reports = Vec::new();
    let done = ProjectionRunner::new(Spending, read.clone())
        .batch_size(4)
        .rebuild(store.clone(), |progress| reports.push(progress.done))
        .await
        .expect("the rebuild");
    assert_eq!((done.done, done.total), (10, 10));
    assert_eq!(reports, [0, 4, 8, 10], "one report before it starts, then one per batch");
    assert_eq!(read.get::<Spent>("spent", "ada").unwrap(), Some(Spent { orders: 10, total: 100 }));
}
