use composable::apply;

pub struct Order;
pub struct OrderPlaced;

impl Order {
    #[apply]
    fn placed(&mut self, _event: &OrderPlaced) {}
}

fn main() {}
