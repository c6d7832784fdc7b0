//! The event bus: how committed events reach other aggregates, sagas and projections.
//!
//! In the flow of `docs/architecture.md` this is the step after the event store: an append
//! commits events to the store (the outbox), the [`crate::relay::Relay`] reads them back
//! gap-safe and publishes them here, and subscribers in consumer groups receive them as [`Delivery`] values that they
//! acknowledge explicitly. The bus never sees an event that was not committed, and a committed
//! event is never lost to it.
//!
//! # Guarantees
//!
//! * **At-least-once.** [`EventBus::publish`] returns `Ok` only when every message was
//!   acknowledged by the bus. A delivery counts as handled only when [`Delivery::ack`] is called;
//!   a delivery that is nacked, dropped, or whose subscriber dies first is delivered again (to
//!   the same subscriber or, after a rebalance, to another member of its group). Handlers must
//!   therefore be idempotent, or filter with [`Dedupe`] by event id.
//! * **Per-key order.** Messages with the same key (for events: the stream id) go to the same
//!   partition and reach a group's member in publish order.
//! * **Consumer groups.** Every group sees every message; within a group each partition (and so
//!   each key) is owned by one member at a time. Without an explicit group, the group id is
//!   derived from the sorted topic names ([`default_group`]), so the same subscriber code gets
//!   the same group after a restart.
//! * **Poison messages.** A delivery that fails [`RedeliveryPolicy::attempts`] times is
//!   moved to the dead-letter topic ([`RedeliveryPolicy::dead_letter_topic`]) with the error in
//!   its headers, and the subscriber moves on.
//!
//! [`InMemoryBus`] keeps these semantics in memory, deterministically;
//! `composable-kafka` keeps them on a Kafka-protocol broker.
//!
//! # Events on the bus
//!
//! Events of the stream category `order` go to the topic `order-events` ([`topic_for`]), keyed by
//! their stream id, with the envelope in headers ([`headers`]). [`BusMessage::from_event`] and
//! [`BusMessage::to_event`] convert both ways.

mod dedupe;
mod delivery;
mod memory;
mod message;
mod namespaced;
mod redelivery;
mod with_breaker;

use std::future::Future;

pub use dedupe::{Dedupe, DedupeError, Handled};
pub use delivery::{Acknowledgement, Answer, Delivery, Subscription};
pub use memory::InMemoryBus;
pub use message::{BusMessage, MessageError, headers, topic_for};
pub use namespaced::Namespaced;
pub use redelivery::RedeliveryPolicy;
pub use with_breaker::WithBreaker;

use crate::BoxError;

/// The consumer group used when a subscriber names none: derived from the sorted, deduplicated
/// topic names, so it is the same for the same subscription on every start.
///
/// ```
/// use composable::bus::default_group;
/// assert_eq!(default_group(&["b-events", "a-events"]), default_group(&["a-events", "b-events"]));
/// assert_eq!(default_group(&["order-events"]), "composable.order-events");
/// ```
pub fn default_group(topics: &[&str]) -> String {
    let mut sorted: Vec<&str> = topics.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    format!("composable.{}", sorted.join(","))
}

/// A bus operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The broker could not be reached or did not acknowledge in time; retrying may succeed.
    /// Some messages of a failed publish may have been delivered (at-least-once).
    #[error("event bus unavailable while trying to {operation}: {source}")]
    Unavailable {
        /// What was being done.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The broker refused a message for good (too large, unknown topic, not authorised).
    #[error("the bus refused a message for topic `{topic}`: {source}")]
    Rejected {
        /// The message's topic.
        topic: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// A subscription named no topic, or an invalid one.
    #[error("invalid subscription: {reason}")]
    InvalidSubscription {
        /// What is wrong with it.
        reason: String,
    },
    /// The bus or the subscription was shut down.
    #[error("the event bus is closed")]
    Closed,
    /// The backend failed in a way retrying will not fix.
    #[error("event bus failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

impl BusError {
    /// Whether retrying the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A publish/subscribe bus with consumer groups and explicit acknowledgement.
///
/// See the [module docs](self) for the guarantees every implementation keeps.
///
/// ```
/// use composable::bus::{BusMessage, EventBus, InMemoryBus};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let bus = InMemoryBus::new();
/// let mut subscription = bus.subscribe(Some("billing"), &["order-events"]).await?;
/// bus.publish(vec![BusMessage::new("order-events", "order-1", b"placed".to_vec())]).await?;
/// let delivery = subscription.next().await.expect("open")?;
/// assert_eq!(delivery.message().payload, b"placed");
/// delivery.ack();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `messages`, keeping the order of messages with the same key. Returns `Ok` only
    /// when the bus acknowledged every one of them.
    fn publish(
        &self,
        messages: Vec<BusMessage>,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Joins the consumer `group` (or [`default_group`] of `topics` when `None`) on `topics`.
    ///
    /// A new group starts at the oldest message the bus still holds. The subscription stays
    /// in the group until it is dropped.
    fn subscribe(
        &self,
        group: Option<&str>,
        topics: &[&str],
    ) -> impl Future<Output = Result<Subscription, BusError>> + Send;
}
