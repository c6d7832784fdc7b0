use composable::step;

pub struct Checkout;
pub struct Placed;

impl Checkout {
    #[step]
    fn placed(&mut self, _event: &Placed) {}
}

fn main() {}
