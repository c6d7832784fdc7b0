//! {{app}}: an order aggregate, a shipping saga and an order board, hosted in one process: in
//! memory ([`Application::in_memory`]), or on PostgreSQL and Kafka (`services`, feature
//! `services`).

pub mod board;
pub mod order;
#[cfg(feature = "services")]
pub mod services;
pub mod shipping;

use std::sync::Arc;

use composable::host::{App, AppBuilder};
use composable::projection::InMemoryDocuments;
use composable::saga::InMemoryTimerStore;
use composable::{AggregateRunner, InMemoryEventStore};

pub use board::{OrderBoard, OrderLine};
pub use order::{Order, OrderCommand, OrderEvent};
pub use shipping::Shipping;

/// The application on in-memory backends: its aggregates' runners, and the host that runs the
/// saga and the projection beside them.
pub struct Application {
    /// Runs the orders' commands.
    pub orders: Arc<AggregateRunner<Order, InMemoryEventStore>>,
    /// The board's documents, for queries.
    pub board: InMemoryDocuments,
    /// The host, built: start it with `App::start`.
    pub app: App<InMemoryEventStore>,
}

impl Application {
    /// Everything in memory.
    ///
    /// # Errors
    /// When the host finds the wiring incomplete.
    pub fn in_memory() -> Result<Self, composable::host::HostError> {
        let store = InMemoryEventStore::new();
        let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
        let board = InMemoryDocuments::new();
        let app = host(store, &orders, board.clone()).build()?;
        Ok(Self { orders, board, app })
    }
}

/// The host: the aggregates, the saga and the projection, on `store`.
pub fn host(
    store: InMemoryEventStore,
    orders: &Arc<AggregateRunner<Order, InMemoryEventStore>>,
    board: InMemoryDocuments,
) -> AppBuilder<InMemoryEventStore, InMemoryTimerStore> {
    App::in_process("{{app}}", store)
        .timers(InMemoryTimerStore::new())
        .aggregate(orders)
        .saga::<Shipping>()
        .projection(OrderBoard, board)
}
