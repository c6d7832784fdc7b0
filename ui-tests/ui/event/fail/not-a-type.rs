use composable::event;

#[event(name = "order.placed", version = 1)]
fn order_placed() {}

fn main() {}
