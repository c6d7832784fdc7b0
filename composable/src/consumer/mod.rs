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
//!   attempts — unless the handler says to retry it in place or to stop
//!   ([`MessageHandler::on_error`]), as a projection that may skip no event does. [`Events`] turns an [`EventHandler`] into a [`MessageHandler`] of the events the
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
use crate::stream::Position;

pub use bus::{BusConsumer, BusConsumerError, Events, EventsError, MessageHandler, OnError};
pub use log::{ConsumerError, LogConsumer, LogReader, ReadError};

/// Where a batch sits in a consumer's log: the checkpoint it follows. What a handler that saves
/// the checkpoint itself needs ([`EventHandler::handle_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint<'a> {
    /// The consumer's checkpoint name.
    pub name: &'a str,
    /// The position the batch follows: the checkpoint as the consumer read it.
    pub after: Position,
    /// The position of the batch's last event: the checkpoint once it is handled.
    pub to: Position,
}

/// Who saved the checkpoint after a batch ([`EventHandler::handle_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Nobody yet: the consumer saves it in its checkpoint store, after the handler.
    ByConsumer,
    /// The handler, in the same transaction as the batch's effects (exactly once, crashes
    /// included): the consumer only moves on.
    ByHandler,
    /// Nobody: the checkpoint was no longer at [`Checkpoint::after`] (another process moved it
    /// on), so the handler applied nothing. The consumer reads the checkpoint again.
    Moved,
    /// Nobody, and nobody will: the handler's work has passed to a newer version of it (a
    /// projection whose newer version now serves queries), so it applied nothing. The consumer
    /// stops.
    Retired,
}

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

    /// Handles `events`, the batch after `at.after`, and says who saved the checkpoint. By
    /// default it calls [`handle`](Self::handle) and leaves the checkpoint to the consumer.
    ///
    /// A handler whose effects live in a store with transactions (a read model's tables) saves
    /// `at.to` as checkpoint `at.name` in the transaction that applies the batch — only if the
    /// checkpoint there is still `at.after`, answering [`Saved::Moved`] otherwise — and answers
    /// [`Saved::ByHandler`]; the consumer's checkpoint store is then that same store, read
    /// through [`CheckpointStore`](crate::checkpoint::CheckpointStore), so a restart resumes
    /// where the last committed batch ended and no event takes effect twice.
    fn handle_at(
        &mut self,
        at: Checkpoint<'_>,
        events: &[RecordedEvent],
    ) -> impl Future<Output = Result<Saved, Self::Error>> + Send {
        let _ = at;
        let handled = self.handle(events);
        async move { handled.await.map(|()| Saved::ByConsumer) }
    }

    /// Called when the consumer has handled everything committed up to the head, `at` being
    /// where it got: before it reports being caught up, and before a
    /// [`catch_up`](LogConsumer::catch_up) returns. Nothing by default; a projection building
    /// a new version switches queries to it here.
    fn caught_up(&mut self, at: Position) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = at;
        async { Ok(()) }
    }

    /// Whether handling the batch again may succeed (by default, always): an error for which this
    /// is `false` stops the consumer at once instead of being retried.
    fn is_retryable(&self, error: &Self::Error) -> bool {
        let _ = error;
        true
    }
}
