use composable::projection::{DocumentBatch, DocumentError, InMemoryDocuments};
use composable::{event, project, projection};
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub customer: String,
}

pub struct Orders;

pub type Result<T> = std::result::Result<T, DocumentError>;

#[projection(name = "orders", store = InMemoryDocuments)]
impl Orders {
    #[project]
    fn placed(&self, _batch: &mut DocumentBatch, _event: &OrderPlaced) -> Result<()> {
        Ok(())
    }
}

fn main() {}
