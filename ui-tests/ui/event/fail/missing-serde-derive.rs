use composable::event;
use serde::Serialize;

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Serialize)]
pub struct OrderPlaced;

#[event(name = "order.cancelled", version = 1)]
#[derive(Debug)]
pub struct OrderCancelled;

fn main() {}
