use composable::event;
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 1, version = 2)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlaced;

fn main() {}
