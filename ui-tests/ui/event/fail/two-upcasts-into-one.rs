use composable::event;
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 2)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlaced;

#[event(name = "order.placed", version = 1, upcast = OrderPlaced)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlacedV1;

#[event(name = "order.placed", version = 1, upcast = OrderPlaced)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlacedV1Again;

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(_: OrderPlacedV1) -> Self {
        OrderPlaced
    }
}

impl From<OrderPlacedV1Again> for OrderPlaced {
    fn from(_: OrderPlacedV1Again) -> Self {
        OrderPlaced
    }
}

fn main() {}
