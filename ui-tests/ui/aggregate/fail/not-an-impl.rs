use composable::aggregate;

#[aggregate(stream = "order")]
#[derive(Default)]
pub struct Order;

fn main() {}
