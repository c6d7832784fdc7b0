use composable::project;

pub struct Orders;
pub struct OrderPlaced;

impl Orders {
    #[project]
    fn placed(&self, _batch: &mut (), _event: &OrderPlaced) {}
}

fn main() {}
