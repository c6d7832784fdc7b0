//! The `OrderBoard` projection: every order's item and status, for queries.

use composable::projection::{DocumentBatch, DocumentError, InMemoryDocuments};
use composable::{project, projection};
use serde::{Deserialize, Serialize};

use crate::order::{OrderCancelled, OrderPlaced, OrderShipped};

/// The board's collection of order lines, keyed by order id.
pub const ORDERS: &str = "orders";

/// One order on the board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    /// What was ordered.
    pub item: String,
    /// `placed`, `shipped` or `cancelled: <reason>`.
    pub status: String,
}

/// Keeps the board from the orders' events.
#[derive(Debug, Clone, Copy)]
pub struct OrderBoard;

#[projection(name = "order_board", store = InMemoryDocuments)]
impl OrderBoard {
    #[project]
    fn placed(&self, batch: &mut DocumentBatch, event: &OrderPlaced) -> Result<(), DocumentError> {
        let line = OrderLine {
            item: event.item.clone(),
            status: "placed".into(),
        };
        batch.put(ORDERS, &event.order_id, &line)
    }

    #[project]
    fn shipped(
        &self,
        batch: &mut DocumentBatch,
        event: &OrderShipped,
    ) -> Result<(), DocumentError> {
        set_status(batch, &event.order_id, "shipped".into())
    }

    #[project]
    fn cancelled(
        &self,
        batch: &mut DocumentBatch,
        event: &OrderCancelled,
    ) -> Result<(), DocumentError> {
        set_status(
            batch,
            &event.order_id,
            format!("cancelled: {}", event.reason),
        )
    }
}

fn set_status(
    batch: &mut DocumentBatch,
    order_id: &str,
    status: String,
) -> Result<(), DocumentError> {
    if let Some(mut line) = batch.get::<OrderLine>(ORDERS, order_id)? {
        line.status = status;
        batch.put(ORDERS, order_id, &line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use composable::testing::ProjectionTest;

    use super::*;

    #[tokio::test]
    async fn the_board_follows_each_order() {
        let mut test = ProjectionTest::new(OrderBoard, InMemoryDocuments::new());
        test.given(
            "order-o1",
            OrderPlaced {
                order_id: "o1".into(),
                item: "tea".into(),
            },
        )
        .await;
        test.given(
            "order-o1",
            OrderShipped {
                order_id: "o1".into(),
            },
        )
        .await;
        let board = test.then().await;
        let line = board.get::<OrderLine>(ORDERS, "o1").expect("readable");
        assert_eq!(
            line,
            Some(OrderLine {
                item: "tea".into(),
                status: "shipped".into()
            })
        );
    }
}
