//! The application on PostgreSQL and Kafka (feature `services`): the events, the saga's timers,
//! every consumer's checkpoint and the board in one database; the outbox relay publishing the
//! log, the command service hosting the orders behind their command topic, and the saga
//! sending its commands through the broker. `cargo run --features services` with
//! `DATABASE_URL` and `KAFKA_BROKERS` set runs it, every service in one process.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use composable::host::App;
use composable::{AggregateRunner, project, projection};
use composable_kafka::{KafkaBus, KafkaConfig};
use composable_postgres::{
    PostgresBatch, PostgresCheckpointStore, PostgresEventStore, PostgresReadStore,
    PostgresTimerStore, ReadModelError,
};

use crate::Shipping;
use crate::board::{ORDERS, OrderLine};
use crate::order::{Order, OrderCancelled, OrderPlaced, OrderShipped, PlaceOrder};

/// The order board, kept in the event store's database: each batch of events and the board's
/// checkpoint commit in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct DurableOrderBoard;

#[projection(name = "order_board", store = PostgresReadStore)]
impl DurableOrderBoard {
    #[project]
    async fn placed(
        &self,
        batch: &mut PostgresBatch,
        event: &OrderPlaced,
    ) -> Result<(), ReadModelError> {
        let line = OrderLine { item: event.item.clone(), status: "placed".into() };
        batch.put(ORDERS, &event.order_id, &line).await
    }

    #[project]
    async fn shipped(
        &self,
        batch: &mut PostgresBatch,
        event: &OrderShipped,
    ) -> Result<(), ReadModelError> {
        set_status(batch, &event.order_id, "shipped".into()).await
    }

    #[project]
    async fn cancelled(
        &self,
        batch: &mut PostgresBatch,
        event: &OrderCancelled,
    ) -> Result<(), ReadModelError> {
        set_status(batch, &event.order_id, format!("cancelled: {}", event.reason)).await
    }
}

async fn set_status(
    batch: &mut PostgresBatch,
    order_id: &str,
    status: String,
) -> Result<(), ReadModelError> {
    if let Some(mut line) = batch.get::<OrderLine>(ORDERS, order_id).await? {
        line.status = status;
        batch.put(ORDERS, order_id, &line).await?;
    }
    Ok(())
}

/// Connects to PostgreSQL at `database_url` and Kafka at `brokers`, migrates the database,
/// creates the topics, places two orders through every service of the application in this
/// process, and prints the board once the saga has shipped them.
///
/// # Errors
/// A service that cannot be reached, a migration or a command that fails.
pub async fn run(database_url: &str, brokers: &str) -> Result<(), Box<dyn std::error::Error>> {
    let store = PostgresEventStore::connect(database_url).await?;
    store.migrate().await?;
    let board = PostgresReadStore::new(store.pool().clone());
    board.migrate().await?;
    let bus = KafkaBus::new(KafkaConfig::new(brokers))?;
    bus.check_connection(Duration::from_secs(10)).await?;

    let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
    let pool = store.pool().clone();
    let app = App::on_bus("{{app}}", store, bus.clone())
        .timers(PostgresTimerStore::new(pool.clone()))
        .checkpoints(PostgresCheckpointStore::new(pool))
        .aggregate(&orders)
        .saga::<Shipping>()
        .projection(DurableOrderBoard, board.clone())
        .build()?;
    let topics: Vec<&str> = app.topics().iter().map(String::as_str).collect();
    bus.create_topics(&topics, 1, 1).await?;
    let running = app.start();

    // Order ids of this run, so that runs against one database don't collide.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let mut placed = Vec::new();
    for (order, item) in [("o1", "tea"), ("o2", "coffee")] {
        let order_id = format!("{run}-{order}");
        let place = PlaceOrder { order_id: order_id.clone(), item: item.into() };
        orders.execute(&order_id, place).await?;
        placed.push(order_id);
    }
    running.settle().await?;
    for order_id in &placed {
        if let Some(line) = board.get::<OrderLine>(ORDERS, order_id).await? {
            println!("order {order_id}: {} ({})", line.item, line.status);
        }
    }
    running.stop().await?;
    Ok(())
}
