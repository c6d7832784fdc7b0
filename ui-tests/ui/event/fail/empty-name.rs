use composable::event;
use serde::{Deserialize, Serialize};

#[event(name = "", version = 1)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlaced;

fn main() {}
