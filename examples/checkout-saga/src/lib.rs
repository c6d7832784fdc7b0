//! A checkout across three aggregates, run by a saga.
//!
//! [`Order`], [`Payment`] and [`Inventory`] are ordinary `#[aggregate]`s that know nothing of
//! each other. [`CheckoutSaga`] reads their events and drives them with commands: an order
//! placed is charged, a captured payment reserves the stock, a reservation confirms the order.
//! A declined card cancels the order; missing stock refunds the payment and cancels the order;
//! a warehouse that doesn't answer within 30 seconds gets its reservation released, then the
//! payment is refunded and the order cancelled.
//!
//! [`Checkout`] wires it together on any event store and timer store: in memory for the demo
//! and the tests, on PostgreSQL in `tests/postgres.rs`. [`hosted`] runs it as services of the
//! application host on PostgreSQL and Kafka: the outbox relay, a command service hosting the
//! three aggregates behind their command topics, and the saga sending its commands through the
//! broker — in one process or split by role (`src/bin/checkout-service.rs`, which reads its
//! environment through [`settings`] and exports its traces with OTLP through [`telemetry`]).
//! [`board`] is the read model a back office queries: every order's outcome and every SKU's
//! stock.
//! [`load`] drives the hosted checkout, running as several processes, at a constant arrival
//! rate and audits what it did (`src/bin/checkout-load.rs`).

pub mod board;
pub mod hosted;
mod inventory;
pub mod load;
mod order;
mod payment;
mod saga;
pub mod settings;
pub mod telemetry;

use std::sync::Arc;

use composable::dispatch::LocalDispatcher;
use composable::saga::TimerStore;
use composable::{AggregateRunner, Clock, EventStore, SagaRunner};

pub use inventory::{
    Inventory, InventoryCommand, InventoryError, InventoryEvent, Release, ReservationRequested,
    Reserve, Restock, Restocked, StockReleased, StockReserved,
};
pub use order::{
    CancelOrder, ConfirmOrder, Order, OrderCancelled, OrderCommand, OrderConfirmed, OrderError,
    OrderEvent, OrderPlaced, OrderStatus, PlaceOrder,
};
pub use payment::{
    Charge, DECLINED_CARD, Payment, PaymentCaptured, PaymentCommand, PaymentError, PaymentEvent,
    PaymentRefunded, Refund,
};
pub use saga::{CheckoutSaga, CheckoutSagaEvent};

/// The three aggregates' runners and the saga's runner, on one event store, the saga
/// dispatching to the three runners in process. (Across a bus, the application host wires the
/// same parts as services: see [`hosted`].)
#[derive(Debug)]
pub struct Checkout<S: EventStore, T: TimerStore> {
    /// Runs order commands.
    pub orders: Arc<AggregateRunner<Order, S>>,
    /// Runs payment commands.
    pub payments: Arc<AggregateRunner<Payment, S>>,
    /// Runs inventory commands.
    pub inventory: Arc<AggregateRunner<Inventory, S>>,
    /// Feeds the checkout saga.
    pub saga: SagaRunner<CheckoutSaga, S, LocalDispatcher, T>,
}

impl<S: EventStore + Clone, T: TimerStore> Checkout<S, T> {
    /// Everything on `store`, the saga's timers in `timers`, time from `clock`.
    pub fn new(store: S, timers: T, clock: impl Clock + Clone) -> Self {
        let Aggregates { orders, payments, inventory } = Aggregates::new(&store, &clock);
        let dispatcher = LocalDispatcher::new()
            .route(Arc::clone(&orders))
            .route(Arc::clone(&payments))
            .route(Arc::clone(&inventory));
        let saga = SagaRunner::new(store, dispatcher, timers).with_clock(clock);
        Self { orders, payments, inventory, saga }
    }
    /// The three aggregates' runners (shared, not copied): what a host serves commands with.
    pub fn aggregates(&self) -> Aggregates<S> {
        Aggregates {
            orders: Arc::clone(&self.orders),
            payments: Arc::clone(&self.payments),
            inventory: Arc::clone(&self.inventory),
        }
    }
}

/// The three aggregates' runners without the saga: what a process hosting the aggregates
/// runs.
#[derive(Debug)]
pub struct Aggregates<S: EventStore> {
    /// Runs order commands.
    pub orders: Arc<AggregateRunner<Order, S>>,
    /// Runs payment commands.
    pub payments: Arc<AggregateRunner<Payment, S>>,
    /// Runs inventory commands.
    pub inventory: Arc<AggregateRunner<Inventory, S>>,
}

impl<S: EventStore + Clone> Aggregates<S> {
    /// The runners on `store`, time from `clock`.
    pub fn new(store: &S, clock: &(impl Clock + Clone)) -> Self {
        Self {
            orders: Arc::new(AggregateRunner::new(store.clone(), ()).with_clock(clock.clone())),
            payments: Arc::new(AggregateRunner::new(store.clone(), ()).with_clock(clock.clone())),
            inventory: Arc::new(AggregateRunner::new(store.clone(), ()).with_clock(clock.clone())),
        }
    }
}
