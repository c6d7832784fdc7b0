//! Every handler shape and key of `#[projection]`: events of two aggregates, by reference and by
//! value, with and without the envelope, `async` or not, fallible or not, errors converted into
//! `error = ...`, and an upcast event arriving as its newest version.

use composable::event::EventSet;
use composable::projection::{DocumentBatch, DocumentError, InMemoryDocuments, Projection};
use composable::{Bincode, Codec, RecordedEvent, event, project, projection};
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub customer: String,
    pub total: u64,
}

#[event(name = "order.placed", version = 1, upcast = OrderPlaced)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlacedV1 {
    pub customer: String,
}

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlaced { customer: v1.customer, total: 0 }
    }
}

#[event(name = "order.shipped", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderShipped;

#[event(name = "payment.refunded", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub customer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Documents(#[from] DocumentError),
    #[error("refunds are not counted yet")]
    Refunds,
}

pub(crate) struct CustomerView {
    collection: &'static str,
}

#[projection(
    name = "customer_view",
    version = 3,
    store = InMemoryDocuments,
    error = ViewError,
    event_enum = ViewInput,
    vis = "pub(crate)",
)]
impl CustomerView {
    /// By reference, fallible with the store's error, converted into `ViewError`.
    #[project]
    fn placed(&self, batch: &mut DocumentBatch, event: &OrderPlaced) -> Result<(), DocumentError> {
        batch.put(self.collection, &event.customer, &event.total)
    }

    /// By value, `async`, with the envelope, infallible.
    #[project]
    async fn shipped(&self, _batch: &mut DocumentBatch, event: OrderShipped, envelope: &RecordedEvent) {
        let _ = (event, envelope.position);
        std::future::ready(()).await;
    }

    /// Fallible with the projection's own error.
    #[project]
    fn refunded(&self, _batch: &mut DocumentBatch, _event: &PaymentRefunded) -> Result<(), ViewError> {
        Err(ViewError::Refunds)
    }

    /// Not a handler: methods without `#[project]` stay as they are.
    fn helper(&self) -> &'static str {
        self.collection
    }
}

fn main() {
    assert_eq!(<CustomerView as Projection>::NAME, "customer_view");
    assert_eq!(<CustomerView as Projection>::VERSION, 3);
    assert_eq!(ViewInput::NAMES, ["order.placed", "order.shipped", "payment.refunded"]);
    assert_eq!(CustomerView { collection: "c" }.helper(), "c");

    // A version 1 payload arrives as the newest version.
    let stored = Bincode.encode(&OrderPlacedV1 { customer: "ada".into() }).unwrap();
    let decoded = ViewInput::decode(&Bincode, "order.placed", 1, &stored).unwrap();
    assert_eq!(decoded, ViewInput::OrderPlaced(OrderPlaced { customer: "ada".into(), total: 0 }));
    assert_eq!(ViewInput::from(OrderShipped), ViewInput::OrderShipped(OrderShipped));
}
