use composable::event;
use serde::{Deserialize, Serialize};

#[event(version = 1)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlaced;

fn main() {}
