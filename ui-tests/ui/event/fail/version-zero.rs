use composable::event;
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 0)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlaced;

fn main() {}
