use composable::projection::{DocumentBatch, InMemoryDocuments};
use composable::{event, project, projection};
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub customer: String,
}

pub struct Orders;

#[projection(name = "orders", store = InMemoryDocuments)]
impl Orders {
    #[project]
    fn placed(_batch: &mut DocumentBatch, _event: &OrderPlaced) {}
}

fn main() {}
