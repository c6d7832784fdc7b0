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

#[event(name = "order.shipped", version = 2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderShipped;

#[event(name = "order.shipped", version = 1, upcast = OrderShipped)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderShippedV1;

impl From<OrderShippedV1> for OrderShipped {
    fn from(_: OrderShippedV1) -> Self {
        OrderShipped
    }
}

#[aggregate(stream = "order")]
impl Order {
    #[command]
    fn place(&self, _command: PlaceOrder) -> OrderPlaced {
        OrderPlaced
    }

    #[apply]
    fn placed(&mut self, _event: &OrderPlaced) {
        self.placed = true;
    }

    #[apply]
    fn shipped(&mut self, _event: &OrderShippedV1) {}
}

fn main() {}
