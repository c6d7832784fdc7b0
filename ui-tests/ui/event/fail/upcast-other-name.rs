use composable::event;
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 2)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlaced;

#[event(name = "order.created", version = 1, upcast = OrderPlaced)]
#[derive(Serialize, Deserialize)]
pub struct OrderCreated;

impl From<OrderCreated> for OrderPlaced {
    fn from(_: OrderCreated) -> Self {
        OrderPlaced
    }
}

fn main() {}
