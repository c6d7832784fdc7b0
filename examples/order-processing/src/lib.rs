//! An order: placed with line items, then shipped or cancelled.
//!
//! `OrderPlaced` has two versions: version 1 carried no total, version 2 does. Stored version 1
//! payloads are upcast on load (`From<OrderPlacedV1> for OrderPlaced` computes the total), so the
//! aggregate only ever sees the newest shape.

pub mod history;

use std::sync::Arc;

use composable::{Clock, aggregate, apply, command, event};
use serde::{Deserialize, Serialize};

/// A line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    /// What.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Price of one, in cents.
    pub unit_price: u64,
}

impl LineItem {
    /// Quantity × unit price, in cents.
    pub fn subtotal(&self) -> u64 {
        u64::from(self.quantity) * self.unit_price
    }
}

/// An order was placed (current shape).
#[event(name = "order.placed", version = 2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// Who ordered.
    pub customer: String,
    /// What.
    pub items: Vec<LineItem>,
    /// The sum of the items, in cents.
    pub total: u64,
}

/// An order was placed (first shape: no total).
#[event(name = "order.placed", version = 1, upcast = OrderPlaced)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlacedV1 {
    /// Who ordered.
    pub customer: String,
    /// What.
    pub items: Vec<LineItem>,
}

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(v1: OrderPlacedV1) -> Self {
        let total = v1.items.iter().map(LineItem::subtotal).sum();
        Self { customer: v1.customer, items: v1.items, total }
    }
}

/// An item was added to a placed order.
#[event(name = "order.item_added", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemAdded {
    /// The new line.
    pub item: LineItem,
}

/// An order was cancelled.
#[event(name = "order.cancelled", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    /// Why.
    pub reason: String,
}

/// An order left the warehouse.
#[event(name = "order.shipped", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderShipped {
    /// Who carries it.
    pub carrier: String,
    /// When, as Unix seconds on the shop's clock.
    pub shipped_at: i64,
}

/// Place an order.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceOrder {
    /// Who orders.
    pub customer: String,
    /// What.
    pub items: Vec<LineItem>,
}

/// Add an item to a placed order that has not shipped.
#[derive(Debug, Clone, PartialEq)]
pub struct AddItem {
    /// The new line.
    pub item: LineItem,
}

/// Cancel an order that has not shipped.
#[derive(Debug, Clone, PartialEq)]
pub struct CancelOrder {
    /// Why.
    pub reason: String,
}

/// Ship a placed order.
#[derive(Debug, Clone, PartialEq)]
pub struct ShipOrder {
    /// Who carries it.
    pub carrier: String,
}

/// Why an order command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Orders are placed once.
    #[error("the order has already been placed")]
    AlreadyPlaced,
    /// Nothing to cancel or ship yet.
    #[error("the order has not been placed")]
    NotPlaced,
    /// An order needs at least one item.
    #[error("an order needs at least one item")]
    NoItems,
    /// The shop limits the size of an order.
    #[error("an order holds at most {max} items")]
    TooManyItems {
        /// The shop's limit.
        max: usize,
    },
    /// Shipped orders can't be cancelled or shipped again.
    #[error("the order has already shipped")]
    AlreadyShipped,
    /// Cancelled orders can't ship or be cancelled again.
    #[error("the order has been cancelled")]
    Cancelled,
}

/// What the order's handlers read besides the state.
#[derive(Debug, Clone)]
pub struct ShopEnv {
    /// The shop's clock.
    pub clock: Arc<dyn Clock>,
    /// The most items one order may hold.
    pub max_items: usize,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Nothing happened yet.
    #[default]
    New,
    /// Placed, not shipped.
    Placed,
    /// On its way.
    Shipped,
    /// Called off.
    Cancelled,
}

/// The order aggregate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Where it stands.
    pub status: Status,
    /// Who ordered.
    pub customer: String,
    /// What.
    pub items: Vec<LineItem>,
    /// The total, in cents.
    pub total: u64,
    /// The carrier, once shipped.
    pub carrier: Option<String>,
}

#[aggregate(stream = "order", snapshot_every = 100)]
impl Order {
    #[command]
    fn place(&self, cmd: PlaceOrder, env: &ShopEnv) -> Result<OrderPlaced, OrderError> {
        if self.status != Status::New {
            return Err(OrderError::AlreadyPlaced);
        }
        if cmd.items.is_empty() {
            return Err(OrderError::NoItems);
        }
        if cmd.items.len() > env.max_items {
            return Err(OrderError::TooManyItems { max: env.max_items });
        }
        let total = cmd.items.iter().map(LineItem::subtotal).sum();
        Ok(OrderPlaced { customer: cmd.customer, items: cmd.items, total })
    }

    #[command]
    fn add_item(&self, cmd: AddItem, env: &ShopEnv) -> Result<ItemAdded, OrderError> {
        match self.status {
            Status::New => Err(OrderError::NotPlaced),
            Status::Shipped => Err(OrderError::AlreadyShipped),
            Status::Cancelled => Err(OrderError::Cancelled),
            Status::Placed if self.items.len() >= env.max_items => {
                Err(OrderError::TooManyItems { max: env.max_items })
            }
            Status::Placed => Ok(ItemAdded { item: cmd.item }),
        }
    }

    #[command]
    fn cancel(&self, cmd: CancelOrder) -> Result<OrderCancelled, OrderError> {
        match self.status {
            Status::New => Err(OrderError::NotPlaced),
            Status::Shipped => Err(OrderError::AlreadyShipped),
            Status::Cancelled => Err(OrderError::Cancelled),
            Status::Placed => Ok(OrderCancelled { reason: cmd.reason }),
        }
    }

    #[command]
    fn ship(&self, cmd: ShipOrder, env: &ShopEnv) -> Result<OrderShipped, OrderError> {
        match self.status {
            Status::New => Err(OrderError::NotPlaced),
            Status::Shipped => Err(OrderError::AlreadyShipped),
            Status::Cancelled => Err(OrderError::Cancelled),
            Status::Placed => {
                Ok(OrderShipped { carrier: cmd.carrier, shipped_at: env.clock.now().timestamp() })
            }
        }
    }

    #[apply]
    fn placed(&mut self, event: &OrderPlaced) {
        self.status = Status::Placed;
        self.customer.clone_from(&event.customer);
        self.items.clone_from(&event.items);
        self.total = event.total;
    }

    #[apply]
    fn item_added(&mut self, event: &ItemAdded) {
        self.total += event.item.subtotal();
        self.items.push(event.item.clone());
    }

    #[apply]
    fn cancelled(&mut self, _event: &OrderCancelled) {
        self.status = Status::Cancelled;
    }

    #[apply]
    fn shipped(&mut self, event: &OrderShipped) {
        self.status = Status::Shipped;
        self.carrier = Some(event.carrier.clone());
    }
}
