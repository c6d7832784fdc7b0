//! [`KafkaBus`]: the [`EventBus`] on a Kafka-protocol broker.

use std::sync::Arc;
use std::time::Duration;

use composable::backend;
use composable::backoff::{Backoff, Failures};
use composable::bus::{Answer, BusError, BusMessage, Delivery, EventBus, Subscription};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError as RdKafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, TopicPartitionList};
use tokio::sync::mpsc;

use crate::config::{CommitMode, KafkaConfig};
use crate::error::{KafkaError, consumer_error, publish_error};

/// How long a publish waits for room when the producer's buffer is full and none of its own
/// messages is pending yet.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);

/// How a failing receive or a dead letter the broker does not take is retried: 100 ms doubling
/// up to 10 s, with jitter, for as long as the subscription lives.
const RETRY: Backoff =
    Backoff::exponential(Duration::from_millis(100)).max_delay(Duration::from_secs(10)).forever();

/// An [`EventBus`] on Kafka (or Redpanda, MSK, tansu: any broker speaking the protocol), through
/// librdkafka. Cheap to clone: clones share one producer.
///
/// * [`publish`](EventBus::publish) hands every message to the producer in order, then waits
///   for the broker to acknowledge each; the idempotent producer keeps a key's order across
///   retries.
/// * [`subscribe`](EventBus::subscribe) creates one consumer in the group and hands its
///   messages out one at a time; an offset is committed only after its delivery was
///   acknowledged. A nacked (or dropped) delivery is retried after the policy's backoff and,
///   after the last attempt, published to the dead-letter topic with the error in its headers,
///   then committed. Rebalances are logged through `tracing`; a delivery in flight when its
///   partition moves is delivered again to the new owner.
///
/// ```no_run
/// use composable::bus::{BusMessage, EventBus};
/// use composable_kafka::{KafkaBus, KafkaConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = KafkaBus::new(KafkaConfig::new("127.0.0.1:9092"))?;
/// bus.create_topics(&["order-events"], 4, 1).await?;
/// bus.publish(vec![BusMessage::new("order-events", "order-1", b"placed".to_vec())]).await?;
/// let mut subscription = bus.subscribe(Some("billing"), &["order-events"]).await?;
/// while let Some(delivery) = subscription.next().await {
///     let delivery = delivery?;
///     // ... handle it ...
///     delivery.ack();
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct KafkaBus {
    producer: FutureProducer,
    config: Arc<KafkaConfig>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus").field("brokers", &self.config.brokers()).finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// A bus with `config`'s producer. Connects lazily: use
    /// [`check_connection`](Self::check_connection) to fail fast.
    ///
    /// # Errors
    /// [`KafkaError::Config`] when librdkafka refuses the configuration.
    pub fn new(config: KafkaConfig) -> Result<Self, KafkaError> {
        let producer = config.producer_config().create().map_err(KafkaError::Config)?;
        Ok(Self { producer, config: Arc::new(config) })
    }

    /// The settings this bus was built with.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// The producer, for publishing outside the [`EventBus`] API.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Asks the brokers for their metadata, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`KafkaError::Unreachable`] when no broker answered.
    pub async fn check_connection(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        let answer = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(|_| ())
        })
        .await;
        match answer {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => {
                Err(KafkaError::Unreachable { brokers: self.config.brokers().to_owned(), source })
            }
            Err(join) => Err(KafkaError::Unreachable {
                brokers: self.config.brokers().to_owned(),
                source: RdKafkaError::MetadataFetch(if join.is_cancelled() {
                    RDKafkaErrorCode::OperationTimedOut
                } else {
                    RDKafkaErrorCode::Fail
                }),
            }),
        }
    }

    /// Creates `topics` with `partitions` partitions and `replication` replicas each; topics
    /// that exist already are left as they are.
    ///
    /// # Errors
    /// When the admin request fails or the broker refuses a topic.
    pub async fn create_topics(
        &self,
        topics: &[&str],
        partitions: i32,
        replication: i32,
    ) -> Result<(), KafkaError> {
        let admin: AdminClient<DefaultClientContext> =
            self.config.admin_config().create().map_err(KafkaError::Config)?;
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(replication)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results =
            admin.create_topics(&new_topics, &options).await.map_err(KafkaError::Admin)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(KafkaError::CreateTopic { topic, code }),
            }
        }
        Ok(())
    }

    fn record<'a>(message: &'a BusMessage) -> FutureRecord<'a, str, [u8]> {
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
        for (key, value) in &message.headers {
            headers = headers.insert(Header { key, value: Some(value.as_slice()) });
        }
        FutureRecord::to(&message.topic)
            .key(message.key.as_str())
            .payload(message.payload.as_slice())
            .headers(headers)
    }
}

async fn acknowledged(topic: &str, delivery: &mut DeliveryFuture) -> Result<(), BusError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(publish_error(topic, error)),
        Err(_canceled) => Err(BusError::Closed),
    }
}

impl EventBus for KafkaBus {
    async fn publish(&self, messages: Vec<BusMessage>) -> Result<(), BusError> {
        let mut pending: Vec<(&str, DeliveryFuture)> = Vec::with_capacity(messages.len());
        let mut confirmed = 0;
        for message in &messages {
            let mut record = Self::record(message);
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push((&message.topic, delivery));
                        break;
                    }
                    Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The producer's buffer is full: wait for the oldest message of this
                        // publish to be acknowledged (or a moment, if none is pending).
                        record = back;
                        match pending.get_mut(confirmed) {
                            Some((topic, delivery)) => {
                                acknowledged(topic, delivery).await?;
                                confirmed += 1;
                            }
                            None => self.config.clock().sleep(QUEUE_FULL_WAIT).await,
                        }
                    }
                    Err((error, _)) => return Err(publish_error(&message.topic, error)),
                }
            }
        }
        for (topic, delivery) in &mut pending[confirmed..] {
            acknowledged(topic, delivery).await?;
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        group: Option<&str>,
        topics: &[&str],
    ) -> Result<Subscription, BusError> {
        if topics.is_empty() || topics.iter().any(|topic| topic.is_empty()) {
            return Err(BusError::InvalidSubscription {
                reason: format!("topics must be a non-empty list of non-empty names: {topics:?}"),
            });
        }
        let group = group
            .or(self.config.configured_group())
            .map_or_else(|| composable::bus::default_group(topics), str::to_owned);
        let consumer: StreamConsumer<GroupContext> = self
            .config
            .consumer_config(&group)
            .create_with_context(GroupContext { group: group.clone() })
            .map_err(|error| consumer_error("create a consumer", error))?;
        consumer.subscribe(topics).map_err(|error| consumer_error("subscribe", error))?;
        let (sender, subscription) = backend::subscription(group, 1);
        let consumer_loop = ConsumerLoop {
            consumer,
            producer: self.producer.clone(),
            config: Arc::clone(&self.config),
            sender,
        };
        let task = tokio::spawn(consumer_loop.run());
        Ok(backend::abort_on_drop(subscription, task.abort_handle()))
    }
}

/// Logs a consumer's rebalances and failed commits.
struct GroupContext {
    group: String,
}

fn partitions(list: &TopicPartitionList) -> Vec<String> {
    list.elements()
        .iter()
        .map(|element| format!("{}[{}]", element.topic(), element.partition()))
        .collect()
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                tracing::info!(group = %self.group, partitions = ?partitions(list), "partitions revoked");
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(group = %self.group, %error, "rebalance failed");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            tracing::info!(group = %self.group, partitions = ?partitions(list), "partitions assigned");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            // A commit for a partition that moved to another member fails; the new owner
            // delivers the message again, which at-least-once allows.
            tracing::warn!(group = %self.group, %error, partitions = ?partitions(offsets), "commit failed");
        }
    }
}

fn bus_message(message: &BorrowedMessage<'_>) -> BusMessage {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| (header.key.to_owned(), header.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    BusMessage {
        topic: message.topic().to_owned(),
        key: message.key().map(|key| String::from_utf8_lossy(key).into_owned()).unwrap_or_default(),
        payload: message.payload().unwrap_or_default().to_vec(),
        headers,
    }
}

/// One subscription's consumer: hands out one message at a time and commits it once answered.
struct ConsumerLoop {
    consumer: StreamConsumer<GroupContext>,
    producer: FutureProducer,
    config: Arc<KafkaConfig>,
    sender: mpsc::Sender<Result<Delivery, BusError>>,
}

impl ConsumerLoop {
    async fn run(self) {
        let mut failures = Failures::new(RETRY);
        loop {
            let message = match self.consumer.recv().await {
                Ok(message) => {
                    failures.succeeded();
                    message
                }
                Err(error) => {
                    let error = consumer_error("receive", error);
                    if self.sender.send(Err(error)).await.is_err() {
                        return;
                    }
                    let wait = failures.failed().unwrap_or(Duration::ZERO);
                    self.config.clock().sleep(wait).await;
                    continue;
                }
            };
            if !self.deliver(&message).await {
                return;
            }
        }
    }

    /// Delivers `message` until it is acknowledged or dead-lettered, then commits it. Returns
    /// `false` when the subscription is gone (nothing is committed then).
    async fn deliver(&self, message: &BorrowedMessage<'_>) -> bool {
        let bus_message = bus_message(message);
        let partition = u32::try_from(message.partition()).unwrap_or_default();
        let offset = u64::try_from(message.offset()).unwrap_or_default();
        let policy = self.config.redelivery_policy();
        let mut attempt = 1;
        loop {
            let (delivery, answer) =
                backend::delivery(bus_message.clone(), partition, offset, attempt);
            if self.sender.send(Ok(delivery)).await.is_err() {
                return false;
            }
            let error = match answer.await {
                Answer::Ack => break,
                Answer::Nack(error) => error,
                // Dropped because the subscription is gone (its holder stopped): not a failure
                // of the message. Nothing is committed; the next member gets it.
                Answer::Dropped if self.sender.is_closed() => return false,
                Answer::Dropped => "the delivery was dropped without an answer".to_owned(),
            };
            if attempt >= policy.attempts() {
                let letter = policy.dead_letter(&bus_message, partition, offset, attempt, &error);
                tracing::warn!(
                    topic = %bus_message.topic,
                    partition,
                    offset,
                    attempts = attempt,
                    dead_letter_topic = %letter.topic,
                    %error,
                    "dead-lettering a message that kept failing"
                );
                if !self.dead_letter(letter).await {
                    return false;
                }
                break;
            }
            attempt += 1;
            policy.backoff().wait_before(attempt, self.config.clock()).await;
        }
        self.commit(message);
        true
    }

    /// Publishes `letter` until the broker acknowledges it, or the subscription is dropped.
    async fn dead_letter(&self, letter: BusMessage) -> bool {
        let mut failures = Failures::new(RETRY);
        loop {
            let sent = match self.producer.send_result(KafkaBus::record(&letter)) {
                Ok(mut delivery) => acknowledged(&letter.topic, &mut delivery).await,
                Err((error, _)) => Err(publish_error(&letter.topic, error)),
            };
            match sent {
                Ok(()) => return true,
                Err(error) => {
                    let wait = failures.failed().unwrap_or(Duration::ZERO);
                    tracing::warn!(topic = %letter.topic, %error, retry_in = ?wait, "dead letter not published");
                    if self.sender.is_closed() {
                        return false;
                    }
                    self.config.clock().sleep(wait).await;
                }
            }
        }
    }

    fn commit(&self, message: &BorrowedMessage<'_>) {
        let committed = match self.config.commit() {
            CommitMode::Async => {
                self.consumer.commit_message(message, rdkafka::consumer::CommitMode::Async)
            }
            CommitMode::Sync => {
                self.consumer.commit_message(message, rdkafka::consumer::CommitMode::Sync)
            }
            CommitMode::Periodic(_) => self.consumer.store_offset_from_message(message),
        };
        if let Err(error) = committed {
            tracing::warn!(
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                %error,
                "could not commit an acknowledged delivery; it may be delivered again"
            );
        }
    }
}
