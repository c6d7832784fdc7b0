use composable::event;
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub total: u64,
}

#[event(name = "order.placed", version = 1, upcast = OrderPlaced)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlacedV1 {
    pub cents: u32,
}

fn main() {}
