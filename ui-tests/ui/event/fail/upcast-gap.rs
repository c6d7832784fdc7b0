use composable::event;
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 3)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlaced;

#[event(name = "order.placed", version = 1, upcast = OrderPlaced)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlacedV1;

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(_: OrderPlacedV1) -> Self {
        OrderPlaced
    }
}

fn main() {}
