//! The checkout board: a read model of every order's outcome and every SKU's stock, kept by a
//! projection of the order and inventory events — what a shop's back office would query, rather
//! than loading aggregates one by one.
//!
//! The saga never reads it (it keeps its own state); it answers queries, where a lag of
//! milliseconds is fine, and a query that must see a command's effect waits for the command's
//! token ([`ServiceHandle::reached`](composable::service::ServiceHandle::reached)).
//!
//! Two projections keep the same board: [`CheckoutBoard`] in memory ([`InMemoryDocuments`]),
//! for the demo and the in-process tests, and [`PostgresBoard`] on PostgreSQL
//! ([`PostgresReadStore`], documents in the event store's database), which the hosted checkout
//! runs as its `board` role ([`hosted`](crate::hosted)). Both apply the same changes.

use composable::projection::{DocumentBatch, DocumentError, InMemoryDocuments};
use composable::{RecordedEvent, project, projection};
use composable_postgres::{PostgresBatch, PostgresReadStore, ReadModelError};
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
        batch.put(ORDERS, &event.order_id, &OrderLine::placed(event))
    }

    #[project]
    fn confirmed(
        &self,
        batch: &mut DocumentBatch,
        event: &OrderConfirmed,
    ) -> Result<(), DocumentError> {
        set_status(batch, &event.order_id, CONFIRMED.into())
    }

    #[project]
    fn cancelled(
        &self,
        batch: &mut DocumentBatch,
        event: &OrderCancelled,
    ) -> Result<(), DocumentError> {
        set_status(batch, &event.order_id, cancelled(event))
    }

    #[project]
    fn restocked(
        &self,
        batch: &mut DocumentBatch,
        event: &Restocked,
        envelope: &RecordedEvent,
    ) -> Result<(), DocumentError> {
        stock(batch, envelope, |level| restock(level, event.quantity))
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
        stock(batch, envelope, |level| release(level, event.quantity))
    }
}

/// The status of a confirmed order.
pub const CONFIRMED: &str = "confirmed";

impl OrderLine {
    /// The line of an order just placed.
    pub fn placed(event: &OrderPlaced) -> Self {
        Self {
            sku: event.sku.clone(),
            quantity: event.quantity,
            total: event.total,
            status: "placed".into(),
        }
    }

    /// Whether the checkout of the order has finished (confirmed or cancelled).
    pub fn finished(&self) -> bool {
        self.status == CONFIRMED || self.status.starts_with("cancelled")
    }
}

/// The status of a cancelled order.
fn cancelled(event: &OrderCancelled) -> String {
    format!("cancelled: {}", event.reason)
}

fn restock(level: &mut StockLevel, quantity: u32) {
    level.available += quantity;
}

fn reserve(level: &mut StockLevel, quantity: u32) {
    level.available = level.available.saturating_sub(quantity);
    level.reserved += quantity;
}

fn release(level: &mut StockLevel, quantity: u32) {
    level.available += quantity;
    level.reserved = level.reserved.saturating_sub(quantity);
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

/// Keeps the board on PostgreSQL: the same documents as [`CheckoutBoard`], in the read store's
/// `read_documents` (collections [`ORDERS`] and [`STOCK`]), committed with the projection's
/// checkpoint in one transaction. Its role in the hosted checkout is `board`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PostgresBoard;

#[projection(name = "board", store = PostgresReadStore)]
impl PostgresBoard {
    #[project]
    async fn placed(
        &self,
        batch: &mut PostgresBatch,
        event: &OrderPlaced,
    ) -> Result<(), ReadModelError> {
        batch.put(ORDERS, &event.order_id, &OrderLine::placed(event)).await
    }

    #[project]
    async fn confirmed(
        &self,
        batch: &mut PostgresBatch,
        event: &OrderConfirmed,
    ) -> Result<(), ReadModelError> {
        set_status_pg(batch, &event.order_id, CONFIRMED.into()).await
    }

    #[project]
    async fn cancelled(
        &self,
        batch: &mut PostgresBatch,
        event: &OrderCancelled,
    ) -> Result<(), ReadModelError> {
        set_status_pg(batch, &event.order_id, cancelled(event)).await
    }

    #[project]
    async fn restocked(
        &self,
        batch: &mut PostgresBatch,
        event: &Restocked,
        envelope: &RecordedEvent,
    ) -> Result<(), ReadModelError> {
        stock_pg(batch, envelope, |level| restock(level, event.quantity)).await
    }

    #[project]
    async fn reserved(
        &self,
        batch: &mut PostgresBatch,
        event: &StockReserved,
        envelope: &RecordedEvent,
    ) -> Result<(), ReadModelError> {
        stock_pg(batch, envelope, |level| reserve(level, event.quantity)).await
    }

    #[project]
    async fn requested(
        &self,
        batch: &mut PostgresBatch,
        event: &ReservationRequested,
        envelope: &RecordedEvent,
    ) -> Result<(), ReadModelError> {
        stock_pg(batch, envelope, |level| reserve(level, event.quantity)).await
    }

    #[project]
    async fn released(
        &self,
        batch: &mut PostgresBatch,
        event: &StockReleased,
        envelope: &RecordedEvent,
    ) -> Result<(), ReadModelError> {
        stock_pg(batch, envelope, |level| release(level, event.quantity)).await
    }
}

async fn set_status_pg(
    batch: &mut PostgresBatch,
    order_id: &str,
    status: String,
) -> Result<(), ReadModelError> {
    // An order the board has not seen placed (it started after) gets no line.
    let Some(mut line) = batch.get::<OrderLine>(ORDERS, order_id).await? else { return Ok(()) };
    line.status = status;
    batch.put(ORDERS, order_id, &line).await
}

async fn stock_pg(
    batch: &mut PostgresBatch,
    envelope: &RecordedEvent,
    change: impl FnOnce(&mut StockLevel) + Send,
) -> Result<(), ReadModelError> {
    let sku = envelope.stream_id.id();
    let mut level: StockLevel = batch.get(STOCK, sku).await?.unwrap_or_default();
    change(&mut level);
    batch.put(STOCK, sku, &level).await
}
