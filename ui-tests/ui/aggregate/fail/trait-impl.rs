use composable::aggregate;

#[derive(Default)]
pub struct Order;

#[aggregate(stream = "order")]
impl Clone for Order {
    fn clone(&self) -> Self {
        Order
    }
}

fn main() {}
