use composable::projection::{InMemoryDocuments};
use composable::{event, project, projection};
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub customer: String,
}

pub struct Orders;

pub struct OtherBatch;

#[projection(name = "orders", store = InMemoryDocuments)]
impl Orders {
    #[project]
    fn placed(&self, _batch: &mut OtherBatch, _event: &OrderPlaced) {}
}

fn main() {}
