//! The stock of one SKU (its id is the SKU): restocked, reserved per order, released by the
//! checkout's timeout.
//!
//! A warehouse that confirms reservations by hand answers a reservation with
//! `ReservationRequested` instead of `StockReserved`; until someone confirms it, the checkout
//! waits, and its timeout fires.

use std::collections::BTreeMap;

use composable::{aggregate, apply, command, event};
use serde::{Deserialize, Serialize};

/// Stock arrived.
#[event(name = "inventory.restocked", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restocked {
    /// How many.
    pub quantity: u32,
    /// Whether reservations wait for a person to confirm them.
    pub manual: bool,
}

/// Stock was set aside for an order.
#[event(name = "inventory.reserved", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockReserved {
    /// The order.
    pub order_id: String,
    /// How many.
    pub quantity: u32,
}

/// A reservation waits for the warehouse to confirm it.
#[event(name = "inventory.reservation_requested", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservationRequested {
    /// The order.
    pub order_id: String,
    /// How many.
    pub quantity: u32,
}

/// A reservation (confirmed or not) was given up.
#[event(name = "inventory.released", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockReleased {
    /// The order.
    pub order_id: String,
    /// How many.
    pub quantity: u32,
}

/// Add stock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restock {
    /// How many.
    pub quantity: u32,
    /// Whether reservations wait for a person to confirm them.
    pub manual: bool,
}

/// Set stock aside for an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reserve {
    /// The order.
    pub order_id: String,
    /// How many.
    pub quantity: u32,
}

/// Give up an order's reservation, if it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// The order.
    pub order_id: String,
}

/// Why an inventory command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// Not enough stock.
    #[error("out of stock: {available} available, {requested} requested")]
    OutOfStock {
        /// What is left.
        available: u32,
        /// What was asked.
        requested: u32,
    },
    /// One reservation per order.
    #[error("order {0} already holds a reservation")]
    AlreadyReserved(String),
}

/// The stock of one SKU.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    /// Not reserved.
    pub available: u32,
    /// Whether reservations wait for a person.
    pub manual: bool,
    /// Reservations (confirmed or requested) by order.
    pub reserved: BTreeMap<String, u32>,
}

#[aggregate(stream = "inventory")]
impl Inventory {
    #[command]
    fn restock(&self, cmd: Restock) -> Restocked {
        Restocked { quantity: cmd.quantity, manual: cmd.manual }
    }

    #[command]
    fn reserve(&self, cmd: Reserve) -> Result<InventoryEvent, InventoryError> {
        if self.reserved.contains_key(&cmd.order_id) {
            return Err(InventoryError::AlreadyReserved(cmd.order_id));
        }
        if cmd.quantity > self.available {
            return Err(InventoryError::OutOfStock {
                available: self.available,
                requested: cmd.quantity,
            });
        }
        let Reserve { order_id, quantity } = cmd;
        Ok(if self.manual {
            ReservationRequested { order_id, quantity }.into()
        } else {
            StockReserved { order_id, quantity }.into()
        })
    }

    #[command]
    fn release(&self, cmd: Release) -> Vec<InventoryEvent> {
        // Releasing what isn't held is a no-op, so the command can be repeated safely.
        match self.reserved.get(&cmd.order_id) {
            Some(&quantity) => vec![StockReleased { order_id: cmd.order_id, quantity }.into()],
            None => Vec::new(),
        }
    }

    #[apply]
    fn restocked(&mut self, event: &Restocked) {
        self.available += event.quantity;
        self.manual = event.manual;
    }

    #[apply]
    fn reserved(&mut self, event: &StockReserved) {
        self.available = self.available.saturating_sub(event.quantity);
        self.reserved.insert(event.order_id.clone(), event.quantity);
    }

    #[apply]
    fn requested(&mut self, event: &ReservationRequested) {
        self.available = self.available.saturating_sub(event.quantity);
        self.reserved.insert(event.order_id.clone(), event.quantity);
    }

    #[apply]
    fn released(&mut self, event: &StockReleased) {
        self.available += event.quantity;
        self.reserved.remove(&event.order_id);
    }
}
