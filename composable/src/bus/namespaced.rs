//! A bus whose topics and consumer groups carry a prefix: several applications, environments
//! or test runs share one broker without seeing each other's messages.

use super::{BusError, BusMessage, EventBus, Subscription};

/// `inner` with every topic and consumer group renamed to `{prefix}{name}`. An empty prefix
/// leaves the names as they are. Topics come back out of a [`Subscription`] under the names the
/// broker has (with the prefix).
///
/// ```
/// use composable::bus::{BusMessage, EventBus, InMemoryBus, Namespaced};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let broker = InMemoryBus::new();
/// let staging = Namespaced::new(broker.clone(), "staging.");
/// let mut everything = broker.subscribe(None, &["staging.order-events"]).await?;
/// staging.publish(vec![BusMessage::new("order-events", "order-1", b"placed".to_vec())]).await?;
/// let delivery = everything.next().await.expect("open")?;
/// assert_eq!(delivery.message().topic, "staging.order-events");
/// assert_eq!(staging.name("order-events"), "staging.order-events");
/// delivery.ack();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Namespaced<B> {
    inner: B,
    prefix: String,
}

impl<B> Namespaced<B> {
    /// `inner` with every topic and group renamed to `{prefix}{name}`.
    pub fn new(inner: B, prefix: impl Into<String>) -> Self {
        Self { inner, prefix: prefix.into() }
    }

    /// The name `name` has on the broker.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The bus under the prefix (for what the [`EventBus`] trait does not cover, such as
    /// creating topics: name them with [`name`](Self::name)).
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

impl<B: EventBus> EventBus for Namespaced<B> {
    async fn publish(&self, mut messages: Vec<BusMessage>) -> Result<(), BusError> {
        for message in &mut messages {
            message.topic.insert_str(0, &self.prefix);
        }
        self.inner.publish(messages).await
    }

    async fn subscribe(
        &self,
        group: Option<&str>,
        topics: &[&str],
    ) -> Result<Subscription, BusError> {
        let group = group.map(|group| self.name(group));
        let topics: Vec<String> = topics.iter().map(|topic| self.name(topic)).collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.inner.subscribe(group.as_deref(), &topics).await
    }
}
