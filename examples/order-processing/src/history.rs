//! The order history read model: one row per order in the application's own table
//! `order_history`, in a read database of its own (or the event store's), kept by a projection
//! whose handlers write SQL in the runner's transaction — so each event changes a row exactly
//! once, a crash in the middle of a batch included.
//!
//! The handlers write the table of their version (`batch.table("order_history")`, which is
//! `order_history_v1`); queries read the view `order_history` of the version that serves, so a
//! new version can be built beside this one without stopping the queries.

use composable::{RecordedEvent, project, projection};
use composable_postgres::{PostgresBatch, PostgresReadStore, ReadModelError};
use sqlx::AssertSqlSafe;

use crate::{ItemAdded, OrderCancelled, OrderPlaced, OrderShipped};

/// The application's migrations of its read database (the table above). The projections' own
/// tables come from [`PostgresReadStore::migrate`].
pub static READ_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./read-migrations");

/// One customer's order, as the history shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrderRow {
    /// The order.
    pub order_id: String,
    /// Who ordered.
    pub customer: String,
    /// `placed`, `shipped` or `cancelled`.
    pub status: String,
    /// Lines.
    pub items: i64,
    /// In cents.
    pub total: i64,
    /// Events applied to the row.
    pub events: i64,
}

/// Keeps `order_history`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderHistory;

fn failed(operation: &'static str) -> impl FnOnce(sqlx::Error) -> ReadModelError {
    move |source| ReadModelError::Database { operation, transient: false, source }
}

fn cents(amount: u64) -> i64 {
    i64::try_from(amount).unwrap_or(i64::MAX)
}

#[projection(name = "order_history", store = PostgresReadStore)]
impl OrderHistory {
    #[project]
    async fn placed(
        &self,
        batch: &mut PostgresBatch,
        event: &OrderPlaced,
        envelope: &RecordedEvent,
    ) -> Result<(), ReadModelError> {
        let table = batch.table("order_history").await?;
        // `table` is a checked name, not user input.
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (order_id, customer, status, items, total, events) \
             VALUES ($1, $2, 'placed', $3, $4, 1)"
        )))
        .bind(envelope.stream_id.id())
        .bind(&event.customer)
        .bind(i64::try_from(event.items.len()).unwrap_or(i64::MAX))
        .bind(cents(event.total))
        .execute(batch.connection())
        .await
        .map_err(failed("insert into order_history"))?;
        Ok(())
    }

    #[project]
    async fn item_added(
        &self,
        batch: &mut PostgresBatch,
        event: &ItemAdded,
        envelope: &RecordedEvent,
    ) -> Result<(), ReadModelError> {
        update(
            batch,
            envelope,
            "items = items + 1, total = total + $2, events = events + 1",
            cents(event.item.subtotal()),
        )
        .await
    }

    #[project]
    async fn cancelled(
        &self,
        batch: &mut PostgresBatch,
        _event: &OrderCancelled,
        envelope: &RecordedEvent,
    ) -> Result<(), ReadModelError> {
        update(batch, envelope, "status = 'cancelled', events = events + $2", 1).await
    }

    #[project]
    async fn shipped(
        &self,
        batch: &mut PostgresBatch,
        _event: &OrderShipped,
        envelope: &RecordedEvent,
    ) -> Result<(), ReadModelError> {
        update(batch, envelope, "status = 'shipped', events = events + $2", 1).await
    }
}

/// Sets `set` on the order's row (`$2` is `amount`).
async fn update(
    batch: &mut PostgresBatch,
    envelope: &RecordedEvent,
    set: &'static str,
    amount: i64,
) -> Result<(), ReadModelError> {
    let table = batch.table("order_history").await?;
    sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET {set} WHERE order_id = $1")))
        .bind(envelope.stream_id.id())
        .bind(amount)
        .execute(batch.connection())
        .await
        .map_err(failed("update order_history"))?;
    Ok(())
}

/// A customer's orders, newest id last.
///
/// # Errors
/// The database.
pub async fn customer_orders(
    read: &PostgresReadStore,
    customer: &str,
) -> Result<Vec<OrderRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM order_history WHERE customer = $1 ORDER BY order_id")
        .bind(customer)
        .fetch_all(read.pool())
        .await
}

/// Every row, by order id: what two read models are compared on.
///
/// # Errors
/// The database.
pub async fn all_orders(read: &PostgresReadStore) -> Result<Vec<OrderRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM order_history ORDER BY order_id").fetch_all(read.pool()).await
}
