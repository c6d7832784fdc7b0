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
//! and the tests, on PostgreSQL in `tests/postgres.rs`; [`distributed`] adds the outbox relay to
//! Kafka, feeds the saga from a consumer group, and sends its commands through Kafka to a
//! command service hosting the three aggregates, in the same process or in another one.

pub mod distributed;
pub mod hosted;
mod inventory;
mod order;
mod payment;
mod saga;

use std::sync::Arc;

use composable::saga::{CommandDispatcher, Dispatcher, TimerStore};
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

/// The three aggregates' runners and the saga's runner, on one event store. The saga sends its
/// commands through `D`: in process to the three runners ([`Checkout::new`]), or across the bus
/// to a command service hosting them ([`Checkout::with_dispatcher`], see [`distributed`]).
#[derive(Debug)]
pub struct Checkout<S: EventStore, T: TimerStore, D = Dispatcher> {
    /// Runs order commands.
    pub orders: Arc<AggregateRunner<Order, S>>,
    /// Runs payment commands.
    pub payments: Arc<AggregateRunner<Payment, S>>,
    /// Runs inventory commands.
    pub inventory: Arc<AggregateRunner<Inventory, S>>,
    /// Feeds the checkout saga.
    pub saga: SagaRunner<CheckoutSaga, S, D, T>,
}

impl<S: EventStore + Clone, T: TimerStore> Checkout<S, T> {
    /// Everything on `store`, the saga's timers in `timers`, time from `clock`; the saga
    /// dispatches to the three runners in process.
    pub fn new(store: S, timers: T, clock: impl Clock + Clone) -> Self {
        let runners = Aggregates::new(&store, &clock);
        let dispatcher = Dispatcher::new()
            .route(Arc::clone(&runners.orders))
            .route(Arc::clone(&runners.payments))
            .route(Arc::clone(&runners.inventory));
        runners.with_saga(store, timers, clock, dispatcher)
    }
}

impl<S: EventStore + Clone, T: TimerStore, D: CommandDispatcher> Checkout<S, T, D> {
    /// Everything on `store`, the saga's timers in `timers`, time from `clock`; the saga sends
    /// its commands through `dispatcher`.
    pub fn with_dispatcher(store: S, timers: T, clock: impl Clock + Clone, dispatcher: D) -> Self {
        Aggregates::new(&store, &clock).with_saga(store, timers, clock, dispatcher)
    }

    /// The three aggregates' runners (shared, not copied).
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

    fn with_saga<T: TimerStore, D: CommandDispatcher>(
        self,
        store: S,
        timers: T,
        clock: impl Clock,
        dispatcher: D,
    ) -> Checkout<S, T, D> {
        let saga = SagaRunner::new(store, dispatcher, timers).with_clock(clock);
        let Self { orders, payments, inventory } = self;
        Checkout { orders, payments, inventory, saga }
    }
}
