use composable::saga::Dispatch;
use composable::{aggregate, apply, command, compensate, event, saga, start, step};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
pub struct Payment;

#[derive(Debug, Clone, PartialEq)]
pub struct Charge;

#[event(name = "payment.captured", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Captured {
    pub order_id: String,
}

#[aggregate(stream = "payment")]
impl Payment {
    #[command]
    fn charge(&self, _command: Charge) -> Captured {
        Captured { order_id: String::new() }
    }

    #[apply]
    fn captured(&mut self, _event: &Captured) {}
}

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    pub order_id: String,
}

#[derive(Debug, Default)]
pub struct Checkout {
    order_id: String,
}

#[saga(name = "checkout", key = order_id)]
impl Checkout {
    #[start(timeout = "30s")]
    fn placed(&mut self, event: &Placed, envelope: composable::RecordedEvent) -> Dispatch {
        self.order_id.clone_from(&event.order_id);
        Dispatch::to::<Payment>(&event.order_id, Charge)
    }

    #[step(end)]
    fn captured(&mut self, _event: &Captured) {}

    #[compensate(placed)]
    fn undo(&self) -> Option<Dispatch> {
        None
    }
}

fn main() {}
