//! The `Order` aggregate: placed, then shipped or cancelled.

use composable::{aggregate, apply, command, event};
use serde::{Deserialize, Serialize};

/// Place an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// The order's id, also its stream's id.
    pub order_id: String,
    /// What is ordered.
    pub item: String,
}

/// Ship a placed order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShipOrder;

/// Cancel an order that has not shipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelOrder {
    /// Why.
    pub reason: String,
}

/// An order was placed.
#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order.
    pub order_id: String,
    /// What is ordered.
    pub item: String,
}

/// An order was shipped.
#[event(name = "order.shipped", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderShipped {
    /// The order.
    pub order_id: String,
}

/// An order was cancelled.
#[event(name = "order.cancelled", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    /// The order.
    pub order_id: String,
    /// Why.
    pub reason: String,
}

/// Why an order refuses a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrderError {
    /// It was placed already.
    #[error("the order was placed already")]
    AlreadyPlaced,
    /// It is not waiting to ship (never placed, shipped or cancelled).
    #[error("the order is {0:?}, not placed")]
    NotPlaced(Status),
    /// An order needs something to order.
    #[error("an order needs an item")]
    NoItem,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    /// Not placed yet.
    #[default]
    New,
    /// Placed, waiting to ship.
    Placed,
    /// Shipped.
    Shipped,
    /// Cancelled.
    Cancelled,
}

/// One order, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Order {
    /// The order's id, once placed.
    pub order_id: String,
    /// Where it stands.
    pub status: Status,
}

#[aggregate(stream = "order")]
impl Order {
    #[command]
    fn place(&self, command: PlaceOrder) -> Result<OrderPlaced, OrderError> {
        if self.status != Status::New {
            return Err(OrderError::AlreadyPlaced);
        }
        if command.item.trim().is_empty() {
            return Err(OrderError::NoItem);
        }
        Ok(OrderPlaced {
            order_id: command.order_id,
            item: command.item,
        })
    }

    #[command]
    fn ship(&self, _command: ShipOrder) -> Result<OrderShipped, OrderError> {
        match self.status {
            Status::Placed => Ok(OrderShipped {
                order_id: self.order_id.clone(),
            }),
            other => Err(OrderError::NotPlaced(other)),
        }
    }

    #[command]
    fn cancel(&self, command: CancelOrder) -> Result<OrderCancelled, OrderError> {
        match self.status {
            Status::Placed => Ok(OrderCancelled {
                order_id: self.order_id.clone(),
                reason: command.reason,
            }),
            other => Err(OrderError::NotPlaced(other)),
        }
    }

    #[apply]
    fn placed(&mut self, event: &OrderPlaced) {
        self.order_id.clone_from(&event.order_id);
        self.status = Status::Placed;
    }

    #[apply]
    fn shipped(&mut self, _event: &OrderShipped) {
        self.status = Status::Shipped;
    }

    #[apply]
    fn cancelled(&mut self, _event: &OrderCancelled) {
        self.status = Status::Cancelled;
    }
}

#[cfg(test)]
mod tests {
    use composable::testing::AggregateTest;

    use super::*;

    fn placed() -> OrderPlaced {
        OrderPlaced {
            order_id: "o1".into(),
            item: "tea".into(),
        }
    }

    #[test]
    fn a_new_order_is_placed() {
        AggregateTest::<Order>::new(())
            .given(Vec::<OrderEvent>::new())
            .when(PlaceOrder {
                order_id: "o1".into(),
                item: "tea".into(),
            })
            .then([placed()]);
    }

    #[test]
    fn an_order_without_an_item_is_refused() {
        AggregateTest::<Order>::new(())
            .given(Vec::<OrderEvent>::new())
            .when(PlaceOrder {
                order_id: "o1".into(),
                item: " ".into(),
            })
            .then_error(OrderError::NoItem);
    }

    #[test]
    fn a_placed_order_ships_once() {
        AggregateTest::<Order>::new(())
            .given([placed()])
            .when(ShipOrder)
            .then([OrderShipped {
                order_id: "o1".into(),
            }]);
        AggregateTest::<Order>::new(())
            .given([
                OrderEvent::from(placed()),
                OrderShipped {
                    order_id: "o1".into(),
                }
                .into(),
            ])
            .when(ShipOrder)
            .then_error(OrderError::NotPlaced(Status::Shipped));
    }
}
