//! Projections through the host: a read model of orders per customer on the in-memory document
//! store, kept with its checkpoint so a restart neither loses nor repeats an event; a query
//! waiting for a command's token; the build check; an event that cannot be decoded stops the
//! projection instead of being skipped.

use std::time::Duration;

use composable::host::{App, HostError};
use composable::projection::{DocumentBatch, DocumentError, InMemoryDocuments};
use composable::service::ServiceState;
use composable::{
    AggregateRunner, EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent,
    StreamId, aggregate, apply, command, event, project, projection,
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

#[tokio::test]
async fn an_event_that_cannot_be_decoded_stops_the_projection() {
    let store = InMemoryEventStore::new();
    let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
    let read = InMemoryDocuments::new();
    let running = host(&store, &orders, &read);
    let corrupt = NewEvent {
        event_id: uuid::Uuid::now_v7(),
        name: "order.placed".into(),
        version: 1,
        format: "bincode".into(),
        payload: vec![0xff; 3],
        metadata: EventMetadata::new_flow(chrono::Utc::now()),
    };
    let stream = StreamId::new("order", "broken").unwrap();
    store.append(&stream, ExpectedVersion::Any, vec![corrupt]).await.unwrap();
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
