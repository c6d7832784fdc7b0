//! The `Shipping` saga: an order placed is shipped; if shipping is refused, the order is
//! cancelled.

use composable::saga::Dispatch;
use composable::{compensate, saga, start, step};

use crate::order::{CancelOrder, Order, OrderPlaced, OrderShipped, ShipOrder};

/// One order's shipping, keyed by its order id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shipping {
    /// The order.
    pub order_id: String,
}

#[saga(name = "shipping", key = order_id)]
impl Shipping {
    /// Placed: ship it. The warehouse has an hour.
    #[start(timeout = "1h")]
    fn order_placed(&mut self, event: &OrderPlaced) -> Dispatch {
        self.order_id.clone_from(&event.order_id);
        Dispatch::to::<Order>(&event.order_id, ShipOrder)
    }

    /// Shipped: done.
    #[step(end)]
    fn order_shipped(&mut self, _event: &OrderShipped) {}

    /// When shipping fails or is late, the order is cancelled.
    #[compensate(order_placed)]
    fn cancel_order(&self) -> Dispatch {
        let reason = "shipping failed".to_owned();
        Dispatch::to::<Order>(&self.order_id, CancelOrder { reason })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use composable::saga::SagaStatus;
    use composable::testing::SagaTest;

    use super::*;

    fn placed() -> OrderPlaced {
        OrderPlaced {
            order_id: "o1".into(),
            item: "tea".into(),
        }
    }

    #[tokio::test]
    async fn a_placed_order_is_shipped() {
        let mut test = SagaTest::<Shipping>::new();
        test.given(placed()).await;
        test.then_dispatched([Dispatch::to::<Order>("o1", ShipOrder)]);
        test.given(OrderShipped {
            order_id: "o1".into(),
        })
        .await;
        assert_eq!(test.status("o1").await, Some(SagaStatus::Completed));
    }

    #[tokio::test]
    async fn a_refused_shipment_cancels_the_order() {
        let mut test = SagaTest::<Shipping>::new();
        test.reject_if::<Order>(
            |command| matches!(command, crate::OrderCommand::ShipOrder(_)),
            "no stock",
        );
        test.given(placed()).await;
        let cancel = CancelOrder {
            reason: "shipping failed".into(),
        };
        test.then_dispatched([
            Dispatch::to::<Order>("o1", ShipOrder),
            Dispatch::to::<Order>("o1", cancel),
        ]);
        assert_eq!(test.status("o1").await, Some(SagaStatus::Compensated));
    }

    #[tokio::test]
    async fn a_late_shipment_cancels_the_order() {
        let mut test = SagaTest::<Shipping>::new();
        test.given(placed()).await;
        test.take_dispatched();
        test.advance(Duration::from_secs(3_601)).await;
        let cancel = CancelOrder {
            reason: "shipping failed".into(),
        };
        test.then_dispatched([Dispatch::to::<Order>("o1", cancel)]);
        assert_eq!(test.status("o1").await, Some(SagaStatus::Compensated));
    }
}
