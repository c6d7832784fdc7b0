//! The checkout on PostgreSQL: the event store and the saga's timers in one database. A process
//! stops while the warehouse timeout is pending; the timeout falls due; a new process fires it
//! once and compensates, and a third finds nothing left to do.
//!
//! Needs `DATABASE_URL` (`scripts/test` starts a private PostgreSQL and sets it).

use std::time::Duration;

use checkout_saga::{Checkout, OrderStatus, PlaceOrder, Restock};
use composable::checkpoint::CheckpointStore;
use composable::saga::SagaStatus;
use composable::testing::read_all_to_head;
use composable::{EventStore, Position, StreamId, TestClock, Version};
use composable_postgres::{
    PgConnectOptions, PostgresCheckpointStore, PostgresEventStore, PostgresTimerStore,
};
use futures::TryStreamExt;
use sqlx::{Connection, Executor, PgConnection};

const HOW_TO_START: &str = "run `scripts/test` (it starts a private PostgreSQL), or \
    `source scripts/lib/postgres.sh && pg_start` in this shell first";

fn admin_options() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| panic!("DATABASE_URL is not set: {HOW_TO_START}"));
    url.parse().unwrap_or_else(|error| panic!("DATABASE_URL `{url}` is not valid: {error}"))
}

/// A fresh, migrated database for one test.
struct Database {
    name: String,
    store: PostgresEventStore,
    timers: PostgresTimerStore,
}

impl Database {
    async fn create() -> Self {
        let mut admin = PgConnection::connect_with(&admin_options())
            .await
            .unwrap_or_else(|error| panic!("cannot reach PostgreSQL: {error}; {HOW_TO_START}"));
        let name = format!("checkout_{}", uuid::Uuid::now_v7().simple());
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create database");
        let store = PostgresEventStore::builder()
            .connect_options(admin_options().database(&name))
            .max_connections(4)
            .connect()
            .await
            .expect("connect to the test database");
        store.migrate().await.expect("migrate");
        let timers = PostgresTimerStore::new(store.pool().clone());
        Self { name, store, timers }
    }

    fn checkpoints(&self) -> PostgresCheckpointStore {
        PostgresCheckpointStore::new(self.store.pool().clone())
    }

    /// The checkout on this database, the saga's read position kept in its `checkpoints`.
    fn checkout(&self, clock: &TestClock) -> Checkout<PostgresEventStore, PostgresTimerStore> {
        let checkout = Checkout::new(self.store.clone(), self.timers.clone(), clock.clone());
        Checkout { saga: checkout.saga.with_checkpoints(self.checkpoints()), ..checkout }
    }

    async fn drop(self) {
        self.store.pool().close().await;
        let mut admin = PgConnection::connect_with(&admin_options()).await.expect("reconnect");
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        admin.execute(sqlx::AssertSqlSafe(sql)).await.expect("drop database");
    }
}

fn place(order_id: &str) -> PlaceOrder {
    PlaceOrder {
        order_id: order_id.into(),
        sku: "tea".into(),
        quantity: 2,
        total: 900,
        card: "tok_visa".into(),
    }
}

#[tokio::test]
async fn the_happy_path_on_postgres() {
    let database = Database::create().await;
    let clock = TestClock::new();
    let checkout = database.checkout(&clock);
    checkout
        .inventory
        .execute("tea", Restock { quantity: 5, manual: false })
        .await
        .expect("restock");
    checkout.orders.execute("1", place("1")).await.expect("place");
    checkout.saga.run_until_idle().await.expect("run the saga");

    assert_eq!(checkout.orders.load("1").await.expect("load").state.status, OrderStatus::Confirmed);
    let summary = checkout.saga.load("1").await.expect("load the saga").expect("started");
    assert_eq!(summary.status, SagaStatus::Completed);
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM timers WHERE fired_at IS NULL")
        .fetch_one(database.store.pool())
        .await
        .expect("count timers");
    assert_eq!(pending, 0, "the steps' timers were cancelled when their next event came");
    database.drop().await;
}

#[tokio::test]
async fn a_timeout_due_across_a_restart_fires_once_on_postgres() {
    let database = Database::create().await;
    let clock = TestClock::new();
    let first = database.checkout(&clock);
    first.inventory.execute("tea", Restock { quantity: 5, manual: true }).await.expect("restock");
    first.orders.execute("1", place("1")).await.expect("place");
    first.saga.run_until_idle().await.expect("run the saga");
    // The saga's read position is durable: the next process resumes after the order it handled.
    let placed = database
        .store
        .read_stream(&StreamId::new("order", "1").expect("stream id"), Version::ZERO)
        .try_next()
        .await
        .expect("read the order")
        .expect("the order was placed");
    let checkpoint = database
        .checkpoints()
        .load(&first.saga.checkpoint_name())
        .await
        .expect("load the saga's checkpoint");
    assert!(checkpoint >= placed.position, "{checkpoint} is before the order {}", placed.position);
    assert_eq!(
        first.saga.load("1").await.expect("load").expect("started").status,
        SagaStatus::Running
    );
    drop(first);

    clock.advance(Duration::from_secs(60)).await;
    let second = database.checkout(&clock);
    let progress = second.saga.run_until_idle().await.expect("run the saga again");
    assert_eq!(progress.iter().filter(|step| step.timed_out).count(), 1);
    assert_eq!(second.orders.load("1").await.expect("load").state.status, OrderStatus::Cancelled);
    assert_eq!(second.payments.load("1").await.expect("load").state.captured, 0);
    assert_eq!(second.inventory.load("tea").await.expect("load").state.available, 5);

    let third = database.checkout(&clock);
    clock.advance(Duration::from_secs(3600)).await;
    assert!(third.saga.run_until_idle().await.expect("run a third time").is_empty());
    let refunds = read_all_to_head(&database.store, Position::START)
        .await
        .iter()
        .filter(|event| event.name == "payment.refunded")
        .count();
    assert_eq!(refunds, 1);
    database.drop().await;
}
