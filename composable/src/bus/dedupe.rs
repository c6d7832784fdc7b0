//! Dropping repeated deliveries by event id, for handlers that are not idempotent by nature.
//!
//! The bus and the relay deliver at least once, so a handler may see the same event twice: after
//! a relay restart, a rebalance, or a crash between handling and acknowledging. A projection
//! that overwrites rows is idempotent already; one that sends an e-mail or increments a counter
//! is not, and puts a [`Dedupe`] in front of its handler.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use super::{Delivery, MessageError};

/// Remembers the ids of the last `capacity` events handled, in memory.
///
/// It catches the repeats the bus produces (which arrive close to the original), not repeats
/// after a process restart: a handler that must never run twice across restarts records the
/// event id in the same transaction as its effect.
///
/// ```
/// use composable::bus::{BusMessage, Dedupe, Delivery, Handled};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dedupe = Dedupe::new(10_000);
/// let id = uuid::Uuid::now_v7();
/// let message = BusMessage::new("order-events", "order-1", vec![])
///     .with_header("event-id", id.to_string());
/// let mut runs = 0;
/// for _ in 0..2 {
///     let (delivery, _answer) = composable::backend::delivery(message.clone(), 0, 0, 1);
///     dedupe
///         .handle(delivery, |_delivery| {
///             runs += 1;
///             async { Ok::<(), std::io::Error>(()) }
///         })
///         .await?;
/// }
/// assert_eq!(runs, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Dedupe {
    seen: Arc<Mutex<Seen>>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Seen {
    ids: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

/// What [`Dedupe::handle`] did with a delivery; it was acknowledged either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The handler ran and succeeded.
    Ran,
    /// The event was seen before: the handler did not run.
    Repeat,
}

/// Why [`Dedupe::handle`] did not acknowledge a delivery (it nacked it).
#[derive(Debug, thiserror::Error)]
pub enum DedupeError<E> {
    /// The delivery has no usable `event-id` header.
    #[error("cannot deduplicate the delivery: {0}")]
    Message(#[from] MessageError),
    /// The handler failed.
    #[error("the handler failed: {0}")]
    Handler(#[source] E),
}

impl Dedupe {
    /// Remembers up to `capacity` event ids (at least 1), forgetting the oldest first.
    pub fn new(capacity: usize) -> Self {
        Self { seen: Arc::default(), capacity: capacity.max(1) }
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `event_id` was recorded (and not forgotten since).
    pub fn contains(&self, event_id: Uuid) -> bool {
        self.seen().ids.contains(&event_id)
    }

    /// Records `event_id` as handled. Returns `false` when it was recorded already.
    pub fn record(&self, event_id: Uuid) -> bool {
        let mut seen = self.seen();
        if !seen.ids.insert(event_id) {
            return false;
        }
        seen.order.push_back(event_id);
        while seen.order.len() > self.capacity {
            if let Some(oldest) = seen.order.pop_front() {
                seen.ids.remove(&oldest);
            }
        }
        true
    }

    /// Runs `handler` on `delivery` unless its event id was handled before; records the id and
    /// acknowledges on success, nacks on failure (so the bus delivers it again).
    ///
    /// # Errors
    /// When the delivery has no event id, or the handler failed.
    pub async fn handle<F, Fut, E>(
        &self,
        delivery: Delivery,
        handler: F,
    ) -> Result<Handled, DedupeError<E>>
    where
        F: FnOnce(&Delivery) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: fmt::Display,
    {
        let event_id = match delivery.message().event_id() {
            Ok(id) => id,
            Err(error) => {
                delivery.nack(&error);
                return Err(error.into());
            }
        };
        if self.contains(event_id) {
            delivery.ack();
            return Ok(Handled::Repeat);
        }
        match handler(&delivery).await {
            Ok(()) => {
                self.record(event_id);
                delivery.ack();
                Ok(Handled::Ran)
            }
            Err(error) => {
                delivery.nack(&error);
                Err(DedupeError::Handler(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_ids_are_forgotten_first() {
        let dedupe = Dedupe::new(2);
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        assert!(dedupe.record(ids[0]));
        assert!(!dedupe.record(ids[0]));
        dedupe.record(ids[1]);
        dedupe.record(ids[2]);
        assert!(!dedupe.contains(ids[0]));
        assert!(dedupe.contains(ids[1]) && dedupe.contains(ids[2]));
    }
}
