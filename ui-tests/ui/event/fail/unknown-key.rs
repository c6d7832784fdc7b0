use composable::event;
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", versoin = 1)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlaced;

fn main() {}
