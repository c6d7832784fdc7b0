//! What a subscriber receives: a [`Subscription`] of [`Delivery`] values, each answered once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};

use super::{BusError, BusMessage, MessageError};
use crate::envelope::RecordedEvent;

/// How a handler answered a [`Delivery`]: what the bus's consumer loop waits for before it moves
/// on. Backends receive it through [`Acknowledgement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Handled: commit past it.
    Ack,
    /// Failed with this error: deliver it again, or dead-letter it after the last attempt.
    Nack(String),
    /// Dropped without an answer (the handler panicked or gave up): treated as a failure.
    Dropped,
}

/// The receiving side of one [`Delivery`]'s acknowledgement, for backends.
#[derive(Debug)]
pub struct Acknowledgement(oneshot::Receiver<Answer>);

impl Future for Acknowledgement {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        Pin::new(&mut self.0).poll(cx).map(|answer| answer.unwrap_or(Answer::Dropped))
    }
}

/// One message handed to a subscriber, to be acknowledged with [`ack`](Self::ack) once handled
/// or refused with [`nack`](Self::nack). Dropping it unanswered counts as a failure: the
/// message is delivered again.
#[derive(Debug)]
pub struct Delivery {
    message: BusMessage,
    partition: u32,
    offset: u64,
    attempt: u32,
    reply: Option<oneshot::Sender<Answer>>,
}

impl Delivery {
    /// A delivery of `message` from `partition` at `offset`, the `attempt`-th time (from 1), and
    /// the acknowledgement its consumer loop awaits: [`crate::backend::delivery`].
    pub(crate) fn new(
        message: BusMessage,
        partition: u32,
        offset: u64,
        attempt: u32,
    ) -> (Self, Acknowledgement) {
        let (reply, answer) = oneshot::channel();
        (Self { message, partition, offset, attempt, reply: Some(reply) }, Acknowledgement(answer))
    }

    /// The message.
    pub fn message(&self) -> &BusMessage {
        &self.message
    }

    /// The partition it was read from.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Its offset in that partition.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How many times it has been delivered, this time included (1 the first time).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The event it carries ([`BusMessage::to_event`]).
    ///
    /// # Errors
    /// When its headers do not describe an event.
    pub fn event(&self) -> Result<RecordedEvent, MessageError> {
        self.message.to_event()
    }

    /// Handled: the bus commits past it and will not deliver it to this group again.
    pub fn ack(mut self) {
        self.answer(Answer::Ack);
    }

    /// Not handled because of `error`: the bus delivers it again after its backoff, or moves it
    /// to the dead-letter topic once it has failed [`RedeliveryPolicy::attempts`](super::RedeliveryPolicy::attempts) times.
    pub fn nack(mut self, error: impl fmt::Display) {
        self.answer(Answer::Nack(error.to_string()));
    }

    fn answer(&mut self, outcome: Answer) {
        if let Some(reply) = self.reply.take() {
            // The consumer loop is gone when the subscription was dropped: nothing to tell.
            let _ = reply.send(outcome);
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.answer(Answer::Dropped);
    }
}

/// The deliveries of one member of a consumer group, in order; a [`Stream`] too.
///
/// Backends feed it through the sender of [`backend::subscription`](crate::backend::subscription). Dropping it leaves the
/// group: deliveries not yet acknowledged go to the next owner of their partition.
#[derive(Debug)]
pub struct Subscription {
    deliveries: mpsc::Receiver<Result<Delivery, BusError>>,
    group: String,
    on_drop: Option<tokio::task::AbortHandle>,
}

impl Subscription {
    /// A subscription for `group` and the sender its consumer loop feeds, holding at most
    /// `capacity` deliveries ahead of the subscriber: [`crate::backend::subscription`].
    pub(crate) fn channel(
        group: impl Into<String>,
        capacity: usize,
    ) -> (mpsc::Sender<Result<Delivery, BusError>>, Self) {
        let (sender, deliveries) = mpsc::channel(capacity.max(1));
        (sender, Self { deliveries, group: group.into(), on_drop: None })
    }

    /// Aborts `task` (the consumer loop) when the subscription is dropped:
    /// [`crate::backend::abort_on_drop`].
    #[must_use]
    pub(crate) fn abort_on_drop(mut self, task: tokio::task::AbortHandle) -> Self {
        self.on_drop = Some(task);
        self
    }

    /// The consumer group this subscription is a member of.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The next delivery, an error the backend reported (the subscription stays usable), or
    /// `None` once the bus closed it.
    pub async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        self.deliveries.recv().await
    }
}

impl Stream for Subscription {
    type Item = Result<Delivery, BusError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.deliveries.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(task) = self.on_drop.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_delivery_reports_dropped() {
        let (delivery, answer) = Delivery::new(BusMessage::new("t", "k", vec![]), 0, 0, 1);
        drop(delivery);
        assert_eq!(answer.await, Answer::Dropped);
        let (delivery, answer) = Delivery::new(BusMessage::new("t", "k", vec![]), 0, 0, 1);
        delivery.nack("boom");
        assert_eq!(answer.await, Answer::Nack("boom".into()));
    }
}
