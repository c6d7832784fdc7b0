//! The checkout board: a read model of every order's outcome and every SKU's stock, kept by a
//! projection of the order and inventory events — what a shop's back office would query, rather
//! than loading aggregates one by one.
//!
//! The saga never reads it (it keeps its own state); it answers queries, where a lag of
//! milliseconds is fine, and a query that must see a command's effect waits for the command's
//! token ([`ServiceHandle::reached`](composable::service::ServiceHandle::reached)).

use composable::projection::{DocumentBatch, DocumentError, InMemoryDocuments};
use composable::{RecordedEvent, project, projection};
use serde::{Deserialize, Serialize};

use crate::{
    OrderCancelled, OrderConfirmed, OrderPlaced, ReservationRequested, Restocked, StockReleased,
    StockReserved,
};

/// The collection of orders, by order id.
pub const ORDERS: &str = "orders";
/// The collection of stock levels, by SKU.
pub const STOCK: &str = "stock";

/// One order, as the board shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// What was ordered.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// In cents.
    pub total: u64,
    /// `placed`, `confirmed`, or `cancelled: {reason}`.
    pub status: String,
}

/// One SKU's stock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// Not reserved.
    pub available: u32,
    /// Set aside for orders (confirmed by the warehouse or not).
    pub reserved: u32,
}

/// Keeps the board.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckoutBoard;

#[projection(name = "checkout_board", store = InMemoryDocuments)]
impl CheckoutBoard {
    #[project]
    fn placed(&self, batch: &mut DocumentBatch, event: &OrderPlaced) -> Result<(), DocumentError> {
        let line = OrderLine {
            sku: event.sku.clone(),
            quantity: event.quantity,
            total: event.total,
            status: "placed".into(),
        };
        batch.put(ORDERS, &event.order_id, &line)
    }

    #[project]
    fn confirmed(
        &self,
        batch: &mut DocumentBatch,
        event: &OrderConfirmed,
    ) -> Result<(), DocumentError> {
        set_status(batch, &event.order_id, "confirmed".into())
    }

    #[project]
    fn cancelled(
        &self,
        batch: &mut DocumentBatch,
        event: &OrderCancelled,
    ) -> Result<(), DocumentError> {
        set_status(batch, &event.order_id, format!("cancelled: {}", event.reason))
    }

    #[project]
    fn restocked(
        &self,
        batch: &mut DocumentBatch,
        event: &Restocked,
        envelope: &RecordedEvent,
    ) -> Result<(), DocumentError> {
        stock(batch, envelope, |level| level.available += event.quantity)
    }

    #[project]
    fn reserved(
        &self,
        batch: &mut DocumentBatch,
        event: &StockReserved,
        envelope: &RecordedEvent,
    ) -> Result<(), DocumentError> {
        stock(batch, envelope, |level| reserve(level, event.quantity))
    }

    #[project]
    fn requested(
        &self,
        batch: &mut DocumentBatch,
        event: &ReservationRequested,
        envelope: &RecordedEvent,
    ) -> Result<(), DocumentError> {
        stock(batch, envelope, |level| reserve(level, event.quantity))
    }

    #[project]
    fn released(
        &self,
        batch: &mut DocumentBatch,
        event: &StockReleased,
        envelope: &RecordedEvent,
    ) -> Result<(), DocumentError> {
        stock(batch, envelope, |level| {
            level.available += event.quantity;
            level.reserved = level.reserved.saturating_sub(event.quantity);
        })
    }
}

fn reserve(level: &mut StockLevel, quantity: u32) {
    level.available = level.available.saturating_sub(quantity);
    level.reserved += quantity;
}

fn set_status(
    batch: &mut DocumentBatch,
    order_id: &str,
    status: String,
) -> Result<(), DocumentError> {
    // An order the board has not seen placed (it started after) gets no line.
    let Some(mut line) = batch.get::<OrderLine>(ORDERS, order_id)? else { return Ok(()) };
    line.status = status;
    batch.put(ORDERS, order_id, &line)
}

/// Changes the stock level of the SKU whose inventory stream `envelope` is.
fn stock(
    batch: &mut DocumentBatch,
    envelope: &RecordedEvent,
    change: impl FnOnce(&mut StockLevel),
) -> Result<(), DocumentError> {
    let sku = envelope.stream_id.id();
    let mut level: StockLevel = batch.get(STOCK, sku)?.unwrap_or_default();
    change(&mut level);
    batch.put(STOCK, sku, &level)
}
