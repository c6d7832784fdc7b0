//! Consumers of committed events: one seam between where events come from and what handles
//! them.
//!
//! In the flow of `docs/architecture.md` everything downstream of an append — the outbox relay,
//! a saga's input, the command service, a projection — reads committed events (or commands) and
//! handles them. They differ only in the handler, so they share one machinery:
//!
//! * **From the event store's global log**: a [`LogReader`] reads after a checkpoint, in batches,
//!   gap-safe, and saves the checkpoint once a batch is handled; a [`LogConsumer`] runs a reader
//!   and an [`EventHandler`] as a [`Service`](crate::service::Service), woken when events commit
//!   ([`EventStore::appends`](crate::EventStore::appends): the in-memory store by itself,
//!   PostgreSQL by `LISTEN/NOTIFY`) with polling as the fallback, retrying failures with a
//!   [`Backoff`](crate::backoff::Backoff) on its [`Clock`](crate::Clock), and reporting whether it has
//!   caught up with the committed head.
//! * **From the bus**: a [`BusConsumer`] subscribes in a consumer group and gives each delivery
//!   to a [`MessageHandler`]; it acknowledges a delivery once it was handled and refuses it
//!   otherwise, so the bus redelivers it with back-off and dead-letters it after the policy's
//!   attempts. [`Events`] turns an [`EventHandler`] into a [`MessageHandler`] of the events the
//!   relay published, so the same handler runs from the log or from the bus.
//!
//! Delivery is at least once from both sources: a batch whose checkpoint was not saved, or a
//! delivery not acknowledged, is handled again after a crash. Handlers are idempotent by nature
//! (a saga ignores what it recorded, an aggregate answers a repeated command as a duplicate) or
//! filter by event id ([`Dedupe`](crate::bus::Dedupe)).

mod bus;
mod log;

use std::future::Future;

use crate::envelope::RecordedEvent;

pub use bus::{BusConsumer, BusConsumerError, Events, EventsError, MessageHandler};
pub use log::{ConsumerError, LogConsumer, LogReader, ReadError};

/// Handles committed events, in log order. See the [module docs](self) for where they come
/// from.
///
/// `handle` gets a batch of consecutive events of the global log (all of them: a handler ignores
/// what it has no use for, and the consumer's checkpoint still moves past it). When it fails, the
/// whole batch is handled again later, so the events before the failing one must be safe to see
/// twice.
///
/// ```
/// use composable::consumer::EventHandler;
/// use composable::RecordedEvent;
///
/// /// Counts the orders placed.
/// #[derive(Default)]
/// struct OrdersPlaced(usize);
///
/// impl EventHandler for OrdersPlaced {
///     type Error = std::convert::Infallible;
///
///     async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), Self::Error> {
///         self.0 += events.iter().filter(|event| event.name == "order.placed").count();
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot handle committed events",
    note = "implement `composable::consumer::EventHandler` (an async `handle` of a batch of \
            `RecordedEvent`s)"
)]
pub trait EventHandler: Send + 'static {
    /// Why a batch could not be handled.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Handles `events`, consecutive in the global log.
    fn handle(
        &mut self,
        events: &[RecordedEvent],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether handling the batch again may succeed (by default, always): an error for which this
    /// is `false` stops the consumer at once instead of being retried.
    fn is_retryable(&self, error: &Self::Error) -> bool {
        let _ = error;
        true
    }
}
