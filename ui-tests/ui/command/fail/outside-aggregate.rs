use composable::command;

pub struct Order;
pub struct PlaceOrder;

impl Order {
    #[command]
    fn place(&self, _command: PlaceOrder) {}
}

fn main() {}
