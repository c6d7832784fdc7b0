//! The order's decisions (given/when/then), its runner on the in-memory store, and stored
//! version 1 payloads loading as version 2.

use std::sync::Arc;

use composable::testing::AggregateTest;
use composable::{
    AggregateRunner, Bincode, Codec, EventMetadata, EventStore, ExpectedVersion,
    InMemoryEventStore, NewEvent, StreamId, TestClock, Version,
};
use order_processing::*;

fn env() -> ShopEnv {
    ShopEnv { clock: Arc::new(TestClock::new()), max_items: 3 }
}

fn item(sku: &str, quantity: u32, unit_price: u64) -> LineItem {
    LineItem { sku: sku.into(), quantity, unit_price }
}

fn placed() -> OrderPlaced {
    OrderPlaced { customer: "ada".into(), items: vec![item("tea", 2, 450)], total: 900 }
}

#[test]
fn placing_an_order_totals_its_items() {
    AggregateTest::<Order>::new(env())
        .when(PlaceOrder { customer: "ada".into(), items: vec![item("tea", 2, 450)] })
        .then([placed()]);
}

#[test]
fn an_order_needs_items_within_the_shop_limit() {
    AggregateTest::<Order>::new(env())
        .when(PlaceOrder { customer: "ada".into(), items: vec![] })
        .then_error(OrderError::NoItems);
    AggregateTest::<Order>::new(env())
        .when(PlaceOrder { customer: "ada".into(), items: vec![item("a", 1, 1); 4] })
        .then_error(OrderError::TooManyItems { max: 3 });
}

#[test]
fn a_placed_order_ships_with_the_clock_time() {
    let env = env();
    let now = env.clock.now().timestamp();
    let state = AggregateTest::<Order>::new(env)
        .given([placed()])
        .when(ShipOrder { carrier: "post".into() })
        .then([OrderShipped { carrier: "post".into(), shipped_at: now }]);
    assert_eq!(state.status, Status::Shipped);
}

#[test]
fn shipped_orders_cannot_be_cancelled() {
    AggregateTest::<Order>::new(env())
        .given([
            OrderEvent::from(placed()),
            OrderShipped { carrier: "post".into(), shipped_at: 0 }.into(),
        ])
        .when(CancelOrder { reason: "changed my mind".into() })
        .then_error(OrderError::AlreadyShipped);
}

#[test]
fn orders_are_placed_once() {
    AggregateTest::<Order>::new(env())
        .given([placed()])
        .when(PlaceOrder { customer: "bob".into(), items: vec![item("tea", 1, 1)] })
        .then_error(OrderError::AlreadyPlaced);
}

#[test]
fn items_can_be_added_until_the_order_ships() {
    let state = AggregateTest::<Order>::new(env())
        .given([placed()])
        .when(AddItem { item: item("cake", 1, 300) })
        .then([ItemAdded { item: item("cake", 1, 300) }]);
    assert_eq!((state.items.len(), state.total), (2, 1200));
    AggregateTest::<Order>::new(env())
        .given([
            OrderEvent::from(placed()),
            ItemAdded { item: item("a", 1, 1) }.into(),
            ItemAdded { item: item("b", 1, 1) }.into(),
        ])
        .when(AddItem { item: item("c", 1, 1) })
        .then_error(OrderError::TooManyItems { max: 3 });
    AggregateTest::<Order>::new(env())
        .when(AddItem { item: item("c", 1, 1) })
        .then_error(OrderError::NotPlaced);
}

#[tokio::test]
async fn the_runner_places_cancels_and_rebuilds() {
    let runner = AggregateRunner::<Order, _>::new(InMemoryEventStore::new(), env());
    runner
        .execute("7", PlaceOrder { customer: "ada".into(), items: vec![item("tea", 2, 450)] })
        .await
        .expect("place");
    let done = runner.execute("7", CancelOrder { reason: "late".into() }).await.expect("cancel");
    assert_eq!(done.state.status, Status::Cancelled);
    let loaded = runner.load("7").await.expect("load");
    assert_eq!((loaded.state, loaded.version), (done.state, Version(2)));
}

#[tokio::test]
async fn stored_version_1_payloads_load_as_version_2() {
    let store = InMemoryEventStore::new();
    let v1 = OrderPlacedV1 {
        customer: "ada".into(),
        items: vec![item("tea", 2, 450), item("cake", 1, 300)],
    };
    let stored = NewEvent {
        event_id: uuid::Uuid::now_v7(),
        name: "order.placed".into(),
        version: 1,
        format: Bincode::FORMAT.into(),
        payload: Bincode.encode(&v1).expect("encode v1"),
        metadata: EventMetadata::new_flow(chrono::Utc::now()),
    };
    let stream = StreamId::new("order", "old").expect("stream");
    store.append(&stream, ExpectedVersion::NoStream, vec![stored]).await.expect("append v1");

    let runner = AggregateRunner::<Order, _>::new(store, env());
    let loaded = runner.load("old").await.expect("a v1 payload loads");
    assert_eq!(loaded.state.status, Status::Placed);
    assert_eq!(loaded.state.total, 2 * 450 + 300, "the upcast computed the total");
    // The upcast order can be shipped like any other.
    runner.execute("old", ShipOrder { carrier: "post".into() }).await.expect("ship");
}
