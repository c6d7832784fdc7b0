use composable::host::App;
use composable::saga::Dispatch;
use composable::{InMemoryEventStore, event, saga, start, step};
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    pub order_id: String,
}

#[event(name = "order.shipped", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipped {
    pub order_id: String,
}

#[derive(Debug, Default)]
pub struct Shipping;

#[saga(name = "shipping", key = order_id)]
impl Shipping {
    #[start(no_compensation)]
    fn placed(&mut self, _event: &Placed) -> Option<Dispatch> {
        None
    }

    #[step(end)]
    fn shipped(&mut self, _event: &Shipped) {}
}

fn main() {
    // A saga's timeouts need somewhere to live: `.timers(...)` comes first.
    let _ = App::in_process("shop", InMemoryEventStore::new()).saga::<Shipping>();
}
