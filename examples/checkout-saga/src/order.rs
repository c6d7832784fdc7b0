//! The order: placed, then confirmed by the checkout or cancelled by its compensation.

use composable::{aggregate, apply, command, event};
use serde::{Deserialize, Serialize};

/// An order was placed. Starts a checkout.
#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order, and the checkout's correlation key.
    pub order_id: String,
    /// What, and how many.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// What the customer pays, in cents.
    pub total: u64,
    /// The customer's payment token.
    pub card: String,
}

/// The checkout went through.
#[event(name = "order.confirmed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    /// The order.
    pub order_id: String,
}

/// The order was called off.
#[event(name = "order.cancelled", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    /// The order.
    pub order_id: String,
    /// Why.
    pub reason: String,
}

/// Place an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// The order's id.
    pub order_id: String,
    /// What.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// The price, in cents.
    pub total: u64,
    /// The payment token.
    pub card: String,
}

/// Confirm a placed order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmOrder;

/// Cancel a placed order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelOrder {
    /// Why.
    pub reason: String,
}

/// Why an order command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Orders are placed once.
    #[error("the order has already been placed")]
    AlreadyPlaced,
    /// An order needs at least one item.
    #[error("an order needs at least one item")]
    NoItems,
    /// Only a placed order can be confirmed or cancelled.
    #[error("the order is {0:?}, not placed")]
    NotPlaced(OrderStatus),
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrderStatus {
    /// Nothing happened yet.
    #[default]
    New,
    /// Waiting for the checkout.
    Placed,
    /// Paid and reserved.
    Confirmed,
    /// Called off.
    Cancelled,
}

/// The order aggregate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Order {
    /// Where it stands.
    pub status: OrderStatus,
    /// Its id.
    pub order_id: String,
}

#[aggregate(stream = "order")]
impl Order {
    #[command]
    fn place(&self, cmd: PlaceOrder) -> Result<OrderPlaced, OrderError> {
        if self.status != OrderStatus::New {
            return Err(OrderError::AlreadyPlaced);
        }
        if cmd.quantity == 0 {
            return Err(OrderError::NoItems);
        }
        let PlaceOrder { order_id, sku, quantity, total, card } = cmd;
        Ok(OrderPlaced { order_id, sku, quantity, total, card })
    }

    #[command]
    fn confirm(&self, _cmd: ConfirmOrder) -> Result<OrderConfirmed, OrderError> {
        match self.status {
            OrderStatus::Placed => Ok(OrderConfirmed { order_id: self.order_id.clone() }),
            other => Err(OrderError::NotPlaced(other)),
        }
    }

    #[command]
    fn cancel(&self, cmd: CancelOrder) -> Result<OrderCancelled, OrderError> {
        match self.status {
            OrderStatus::Placed => {
                Ok(OrderCancelled { order_id: self.order_id.clone(), reason: cmd.reason })
            }
            other => Err(OrderError::NotPlaced(other)),
        }
    }

    #[apply]
    fn placed(&mut self, event: &OrderPlaced) {
        self.status = OrderStatus::Placed;
        self.order_id.clone_from(&event.order_id);
    }

    #[apply]
    fn confirmed(&mut self, _event: &OrderConfirmed) {
        self.status = OrderStatus::Confirmed;
    }

    #[apply]
    fn cancelled(&mut self, _event: &OrderCancelled) {
        self.status = OrderStatus::Cancelled;
    }
}
