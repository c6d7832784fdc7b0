use composable::{aggregate, apply, command, event};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
pub struct Order {
    placed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlaceOrder;

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced;

#[aggregate(snapshot_schema = 2)]
impl Order {
    #[command]
    fn place(&self, _command: PlaceOrder) -> OrderPlaced {
        OrderPlaced
    }

    #[apply]
    fn placed(&mut self, _event: &OrderPlaced) {
        self.placed = true;
    }
}

fn main() {}
