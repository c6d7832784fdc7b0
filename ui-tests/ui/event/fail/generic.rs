use composable::event;
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 1)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlaced<T> {
    pub total: T,
}

fn main() {}
