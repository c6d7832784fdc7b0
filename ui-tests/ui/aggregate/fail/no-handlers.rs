use composable::{aggregate, event};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
pub struct Order {
    placed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlaceOrder;

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced;

#[aggregate(stream = "order")]
impl Order {
    fn helper(&self) -> bool {
        self.placed
    }
}

fn main() {}
