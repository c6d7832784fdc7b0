//! An application without sagas needs no timer store.

use std::sync::Arc;

use composable::host::App;
use composable::{AggregateRunner, InMemoryEventStore, aggregate, apply, command, event};
use serde::{Deserialize, Serialize};

#[event(name = "counter.incremented", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incremented;

#[derive(Debug, Clone, PartialEq)]
pub struct Increment;

#[derive(Debug, Default)]
pub struct Counter;

#[aggregate(stream = "counter")]
impl Counter {
    #[command]
    fn increment(&self, _command: Increment) -> Incremented {
        Incremented
    }

    #[apply]
    fn incremented(&mut self, _event: &Incremented) {}
}

fn main() {
    let store = InMemoryEventStore::new();
    let counters = Arc::new(AggregateRunner::<Counter, _>::new(store.clone(), ()));
    let app = App::in_process("counting", store).aggregate(&counters).build().unwrap();
    // In process, aggregates run where their commands are sent: no service of their own.
    assert!(app.services().is_empty());
}
