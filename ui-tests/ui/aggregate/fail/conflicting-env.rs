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

#[derive(Debug, Clone, PartialEq)]
pub struct CancelOrder;

pub struct ShopEnv;
pub struct Clock;

#[aggregate(stream = "order")]
impl Order {
    #[command]
    fn place(&self, _command: PlaceOrder, _env: &ShopEnv) -> OrderPlaced {
        OrderPlaced
    }

    #[command]
    fn cancel(&self, _command: CancelOrder, _env: &Clock) -> OrderPlaced {
        OrderPlaced
    }

    #[apply]
    fn placed(&mut self, _event: &OrderPlaced) {
        self.placed = true;
    }
}

fn main() {}
