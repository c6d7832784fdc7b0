//! A bus whose publishes go through a circuit breaker: while the broker is down, publishing
//! fails at once instead of each call waiting for its own timeout.

use super::{BusError, BusMessage, EventBus, Subscription};
use crate::breaker::{BreakerError, CircuitBreaker};

/// `inner` with every [`publish`](EventBus::publish) made through `breaker`: the relay's batches,
/// a command service's replies, a saga's commands — every publisher sharing this bus shares the
/// breaker. Only failures that say the broker is unwell ([`BusError::is_transient`]) count
/// towards opening it; a message the broker refused for good does not. While the breaker is
/// open a publish fails with [`BusError::Unavailable`] without reaching the broker, so the
/// publisher backs off and tries again as it would for any outage. Subscriptions are made
/// directly.
///
/// ```
/// use std::time::Duration;
/// use composable::breaker::{BreakerPolicy, CircuitBreaker};
/// use composable::bus::{BusMessage, EventBus, InMemoryBus, WithBreaker};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let breaker = CircuitBreaker::new("publish", BreakerPolicy::default().open_for(Duration::from_secs(10)));
/// let bus = WithBreaker::new(InMemoryBus::new(), breaker.clone());
/// bus.publish(vec![BusMessage::new("order-events", "order-1", b"placed".to_vec())]).await?;
/// assert_eq!(bus.breaker().name(), "publish");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct WithBreaker<B> {
    inner: B,
    breaker: CircuitBreaker,
}

impl<B> WithBreaker<B> {
    /// `inner`, publishing through `breaker`.
    pub fn new(inner: B, breaker: CircuitBreaker) -> Self {
        Self { inner, breaker }
    }

    /// The breaker publishes go through.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The bus behind the breaker.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

impl<B: EventBus> EventBus for WithBreaker<B> {
    async fn publish(&self, messages: Vec<BusMessage>) -> Result<(), BusError> {
        match self.breaker.call_counting(self.inner.publish(messages), BusError::is_transient).await
        {
            Ok(()) => Ok(()),
            Err(BreakerError::Failed(error)) => Err(error),
            Err(open @ BreakerError::Open { .. }) => {
                Err(BusError::Unavailable { operation: "publish", source: Box::new(open) })
            }
        }
    }

    async fn subscribe(
        &self,
        group: Option<&str>,
        topics: &[&str],
    ) -> Result<Subscription, BusError> {
        self.inner.subscribe(group, topics).await
    }
}
