use composable::{aggregate, apply, command, event};
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

#[derive(Debug, Clone, PartialEq)]
pub struct CancelOrder;

#[aggregate(stream = "order")]
impl Order {
    #[command]
    fn place(&self, _command: PlaceOrder) -> Result<OrderPlaced, std::fmt::Error> {
        Ok(OrderPlaced)
    }

    #[command]
    fn cancel(&self, _command: CancelOrder) -> Result<OrderPlaced, std::io::Error> {
        Ok(OrderPlaced)
    }

    #[apply]
    fn placed(&mut self, _event: &OrderPlaced) {
        self.placed = true;
    }
}

fn main() {}
