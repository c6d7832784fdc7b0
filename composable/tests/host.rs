//! The host's check of a saga's dispatch targets: `#[saga]` collects the aggregates its handlers
//! dispatch to (every `Dispatch::to::<A>` in the impl block, inside `vec![..]` too, plus those
//! named in `dispatches(..)`), and `AppBuilder::build` refuses a saga whose targets are not all
//! registered.

use std::sync::Arc;

use composable::host::{App, HostError};
use composable::saga::{Dispatch, InMemoryTimerStore};
use composable::{
    AggregateRunner, InMemoryEventStore, Saga, aggregate, apply, command, compensate, event, saga,
    start, step,
};
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlaceOrder {
    pub order_id: String,
}

#[derive(Debug, Default)]
pub struct Order;

#[aggregate(stream = "order")]
impl Order {
    #[command]
    fn place(&self, command: PlaceOrder) -> OrderPlaced {
        OrderPlaced { order_id: command.order_id }
    }

    #[apply]
    fn placed(&mut self, _event: &OrderPlaced) {}
}

#[event(name = "payment.captured", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    pub order_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub order_id: String,
}

#[derive(Debug, Default)]
pub struct Payment;

#[aggregate(stream = "payment")]
impl Payment {
    #[command]
    fn charge(&self, command: Charge) -> PaymentCaptured {
        PaymentCaptured { order_id: command.order_id }
    }

    #[apply]
    fn captured(&mut self, _event: &PaymentCaptured) {}
}

#[event(name = "ledger.posted", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Posted;

#[derive(Debug, Clone, PartialEq)]
pub struct Post;

#[derive(Debug, Default)]
pub struct Ledger;

#[aggregate(stream = "ledger")]
impl Ledger {
    #[command]
    fn post(&self, _command: Post) -> Posted {
        Posted
    }

    #[apply]
    fn posted(&mut self, _event: &Posted) {}
}

#[event(name = "audit.noted", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Noted;

#[derive(Debug, Clone, PartialEq)]
pub struct Note;

#[derive(Debug, Default)]
pub struct Audit;

#[aggregate(stream = "audit")]
impl Audit {
    #[command]
    fn note(&self, _command: Note) -> Noted {
        Noted
    }

    #[apply]
    fn noted(&mut self, _event: &Noted) {}
}

/// Built outside the saga's impl block: `#[saga]` cannot see it, so the saga names `Audit` in
/// `dispatches(..)`.
fn audit(order_id: &str) -> Dispatch {
    Dispatch::to::<Audit>(order_id, Note)
}

#[derive(Debug, Default)]
pub struct Checkout {
    order_id: String,
}

#[saga(name = "checkout", key = order_id, dispatches(Audit))]
impl Checkout {
    #[start]
    fn order_placed(&mut self, event: &OrderPlaced) -> Vec<Dispatch> {
        self.order_id.clone_from(&event.order_id);
        vec![
            Dispatch::to::<Payment>(&event.order_id, Charge { order_id: event.order_id.clone() }),
            audit(&event.order_id),
        ]
    }

    #[step(end)]
    fn payment_captured(&mut self, _event: &PaymentCaptured) -> Dispatch {
        self.post()
    }

    #[compensate(order_placed)]
    fn undo(&self) -> Option<Dispatch> {
        None
    }

    /// A helper in the impl block: its `Dispatch::to::<Ledger>` counts.
    fn post(&self) -> Dispatch {
        Dispatch::to::<Ledger>(&self.order_id, Post)
    }
}

#[test]
fn the_saga_knows_the_aggregates_it_dispatches_to() {
    assert_eq!(Checkout::DISPATCHES, ["audit", "payment", "ledger"]);
}

#[test]
fn the_host_refuses_a_saga_whose_commands_have_no_aggregate_to_run_them() {
    let store = InMemoryEventStore::new();
    let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
    let payments = Arc::new(AggregateRunner::<Payment, _>::new(store.clone(), ()));
    let ledger = Arc::new(AggregateRunner::<Ledger, _>::new(store.clone(), ()));
    let audit = Arc::new(AggregateRunner::<Audit, _>::new(store.clone(), ()));
    let builder = || {
        App::in_process("shop", store.clone())
            .timers(InMemoryTimerStore::new())
            .aggregate(&orders)
            .aggregate(&payments)
            .aggregate(&audit)
            .saga::<Checkout>()
    };

    let error = builder().build().unwrap_err();
    assert_eq!(error, HostError::UnregisteredTarget { saga: "checkout", aggregate: "ledger" });
    assert_eq!(
        error.to_string(),
        "saga `checkout` dispatches commands to aggregate `ledger`, which is not registered, so \
         they would find no one to run them: register its runner with `.aggregate(&runner)`"
    );

    let app = builder().aggregate(&ledger).build().expect("every target is registered");
    assert_eq!(app.services().len(), 2, "the saga's input and its timers");
}
