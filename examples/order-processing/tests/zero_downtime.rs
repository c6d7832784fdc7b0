//! A rebuild without downtime, on PostgreSQL: while orders keep being placed and the history
//! keeps being queried, version 2 of the order history builds its own table from the start of
//! the log beside version 1, takes the queries over once it has caught up, and version 1 is
//! retired and dropped. No query fails or sees a partly built history, and the new version
//! ends equal to a rebuild from scratch.
//!
//! Needs `DATABASE_URL` (`scripts/test` starts a private PostgreSQL and sets it).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Database;
use composable::projection::{Projection, ProjectionRunner, ReadStore, RebuildProgress};
use composable::service::{self, ServiceState};
use composable::{AggregateRunner, RecordedEvent, SystemClock};
use composable_postgres::{PostgresBatch, PostgresEventStore, PostgresReadStore};
use order_processing::history::{self, OrderHistory};
use order_processing::{LineItem, Order, PlaceOrder, ShopEnv};

const WAIT: Duration = Duration::from_secs(120);

/// Version 2 of the order history, written by hand over version 1's handlers: they write the
/// table of the batch's version, so this one fills `order_history_v2`.
struct OrderHistoryV2;

impl Projection for OrderHistoryV2 {
    const NAME: &'static str = <OrderHistory as Projection>::NAME;
    const VERSION: u32 = 2;
    type Event = <OrderHistory as Projection>::Event;
    type Store = PostgresReadStore;
    type Error = <OrderHistory as Projection>::Error;

    async fn apply(
        &self,
        batch: &mut PostgresBatch,
        event: Self::Event,
        envelope: &RecordedEvent,
    ) -> Result<(), Self::Error> {
        OrderHistory.apply(batch, event, envelope).await
    }
}

type Orders = AggregateRunner<Order, PostgresEventStore>;

async fn place(orders: &Orders, id: u64) -> composable::consistency::ReadToken {
    let items =
        vec![LineItem { sku: "tea".into(), quantity: 1 + (id % 3) as u32, unit_price: 450 }];
    let placed = orders
        .execute(id, PlaceOrder { customer: format!("c{}", id % 50), items })
        .await
        .unwrap_or_else(|error| panic!("place order {id}: {error}"));
    placed.token.expect("a new order appends")
}

/// A read database with the projections' tables, the application's (version 1) and version 2's
/// table, as its next migration would create it.
async fn read_database(database: &Database) -> PostgresReadStore {
    let read = PostgresReadStore::connect(&database.url).await.expect("connect to the read model");
    read.migrate().await.expect("the projections' tables");
    history::READ_MIGRATIONS.run(read.pool()).await.expect("the application's tables");
    sqlx::query("CREATE TABLE order_history_v2 (LIKE order_history_v1 INCLUDING ALL)")
        .execute(read.pool())
        .await
        .expect("version 2's table");
    read
}

async fn table_exists(read: &PostgresReadStore, table: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(read.pool())
        .await
        .expect("look the table up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_takes_over_while_commands_and_queries_go_on() {
    let (events, reads, scratch) =
        (Database::create().await, Database::create().await, Database::create().await);
    let store = PostgresEventStore::connect(&events.url).await.expect("connect to the events");
    store.migrate().await.expect("the event store's tables");
    let read = read_database(&reads).await;
    let env = ShopEnv { clock: Arc::new(SystemClock), max_items: 100 };
    let orders = Arc::new(Orders::new(store.clone(), env));

    // Version 1 serves a history of 400 orders.
    let mut last = None;
    for id in 1..=400 {
        last = Some(place(&orders, id).await);
    }
    let v1 =
        service::spawn(ProjectionRunner::new(OrderHistory, read.clone()).consumer(store.clone()));
    v1.reached(last.expect("orders placed"), WAIT).await.expect("version 1 caught up");
    assert_eq!(read.active_version("order_history").await.expect("active"), Some(1));

    // Orders keep coming, and queries keep reading the history.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = tokio::spawn({
        let (orders, writing) = (Arc::clone(&orders), Arc::clone(&writing));
        async move {
            let mut id = 1000;
            let mut last = None;
            while writing.load(Ordering::Relaxed) {
                last = Some(place(&orders, id).await);
                id += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (id - 1000, last)
        }
    });
    let reader = tokio::spawn({
        let (read, writing) = (read.clone(), Arc::clone(&writing));
        async move {
            let (mut queries, mut fewest) = (0_u64, i64::MAX);
            while writing.load(Ordering::Relaxed) {
                let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM order_history")
                    .fetch_one(read.pool())
                    .await
                    .unwrap_or_else(|error| panic!("a query failed during the rebuild: {error}"));
                fewest = fewest.min(rows);
                queries += 1;
            }
            (queries, fewest)
        }
    });

    // Version 2 builds beside it and takes over once caught up.
    let v2 =
        service::spawn(ProjectionRunner::new(OrderHistoryV2, read.clone()).consumer(store.clone()));
    let deadline = Instant::now() + WAIT;
    while read.active_version("order_history").await.expect("active") != Some(2) {
        assert!(Instant::now() < deadline, "version 2 did not take over in {WAIT:?}");
        assert!(!v2.is_finished(), "version 2 stopped: {:?}", v2.health());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Version 1 sees the switch at its next batch, and retires.
    let retired = tokio::time::timeout(WAIT, v1.join()).await.expect("version 1 retires");
    retired.expect("version 1 retires without an error");

    writing.store(false, Ordering::Relaxed);
    let (placed, last) = writer.await.expect("the writer");
    let (queries, fewest) = reader.await.expect("the reader");
    assert!(placed > 0 && queries > 0, "{placed} orders placed, {queries} queries during it");
    assert!(fewest >= 400, "a query saw {fewest} orders: a partly built version was served");
    if let Some(last) = last {
        v2.reached(last, WAIT).await.expect("version 2 follows the log");
    }
    assert_eq!(v2.health().state, ServiceState::Running);
    v2.stop().await.expect("version 2 stops cleanly");

    assert!(!table_exists(&read, "order_history_v1").await, "version 1's table is dropped");
    let v1_checkpoint = read.checkpoints();
    let v1_at =
        composable::checkpoint::CheckpointStore::load(&v1_checkpoint, "projection.order_history")
            .await
            .expect("load");
    assert_eq!(v1_at, composable::Position::START, "and its checkpoint");

    // A rebuild from scratch of version 2, elsewhere, equals what took over.
    let rebuilt = read_database(&scratch).await;
    let mut reports: Vec<RebuildProgress> = Vec::new();
    let done = ProjectionRunner::new(OrderHistoryV2, rebuilt.clone())
        .rebuild(store.clone(), |progress| reports.push(*progress))
        .await
        .expect("rebuild from scratch");
    assert_eq!(done.done, done.total, "the whole log: {done:?}");
    assert!(reports.windows(2).all(|pair| pair[0].done <= pair[1].done), "progress only grows");
    let served = history::all_orders(&read).await.expect("the history");
    assert_eq!(served.len() as u64, 400 + placed);
    assert_eq!(served, history::all_orders(&rebuilt).await.expect("the rebuild"));

    for pool in [read.pool(), rebuilt.pool()] {
        pool.close().await;
    }
    store.pool().close().await;
    for database in [events, reads, scratch] {
        database.drop().await;
    }
}
