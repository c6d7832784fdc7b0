//! The in-memory twin of the Kafka bus, for tests and single-process apps.
//!
//! It keeps the semantics the [bus module](super) documents: topics split into partitions by a
//! stable hash of the key, consumer groups whose members share the partitions, explicit
//! acknowledgement with redelivery, backoff and a dead-letter topic. Everything is
//! deterministic: which partition a key lands in, which member owns it (partition `p` of a topic
//! goes to the `p mod n`-th of its `n` members in joining order), and the order of deliveries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};

use crate::clock::{Clock, SystemClock};

use super::{Answer, BusError, BusMessage, Delivery, EventBus, RedeliveryPolicy, Subscription};

/// An [`EventBus`] held in memory. Cheap to clone: clones share the same topics and groups.
///
/// ```
/// use composable::bus::{BusMessage, EventBus, InMemoryBus};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let bus = InMemoryBus::new().with_partitions(2);
/// // Two members of one group split the partitions; another group sees everything again.
/// let mut a = bus.subscribe(Some("projection"), &["order-events"]).await?;
/// let mut b = bus.subscribe(Some("projection"), &["order-events"]).await?;
/// let mut audit = bus.subscribe(Some("audit"), &["order-events"]).await?;
/// bus.publish(vec![
///     BusMessage::new("order-events", "order-1", b"1".to_vec()),
///     BusMessage::new("order-events", "order-2", b"2".to_vec()),
/// ])
/// .await?;
/// let to_a = bus.partition_of("order-events", "order-1");
/// let first = if to_a == 0 { a.next().await } else { b.next().await };
/// assert_eq!(first.expect("open")?.message().key, "order-1");
/// for _ in 0..2 {
///     audit.next().await.expect("open")?.ack();
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct InMemoryBus {
    inner: Arc<Inner>,
    partitions: u32,
    policy: RedeliveryPolicy,
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Bumped after every publish and every change of a group's members.
    changed: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    topics: HashMap<String, Topic>,
    groups: HashMap<String, Group>,
    next_member: u64,
}

#[derive(Debug)]
struct Topic {
    /// Every message in publish order.
    log: Vec<BusMessage>,
    /// Per partition, indexes into `log`: a message's offset is its place here.
    partitions: Vec<Vec<usize>>,
}

#[derive(Debug, Default)]
struct Group {
    /// In joining order: what the assignment of partitions is computed from.
    members: Vec<(u64, Vec<String>)>,
    /// The next offset to deliver, per (topic, partition).
    committed: HashMap<(String, u32), u64>,
}

impl Default for InMemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryBus {
    /// An empty bus whose topics have 4 partitions, with the default [`RedeliveryPolicy`].
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                changed: watch::channel(0).0,
            }),
            partitions: 4,
            policy: RedeliveryPolicy::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Topics created from now on get `partitions` partitions (at least 1).
    #[must_use]
    pub fn with_partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// Subscriptions made from now on wait between redeliveries on `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Subscriptions made from now on retry and dead-letter by `policy`.
    #[must_use]
    pub fn with_redelivery(mut self, policy: RedeliveryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The partition a message of `topic` with `key` goes to: a stable hash (FNV-1a) of the key
    /// modulo the topic's partition count.
    pub fn partition_of(&self, topic: &str, key: &str) -> u32 {
        let count = self
            .state()
            .topics
            .get(topic)
            .map_or(self.partitions, |topic| topic.partitions.len() as u32);
        partition_for(key, count)
    }

    /// Every message published to `topic` so far, in publish order.
    pub fn messages(&self, topic: &str) -> Vec<BusMessage> {
        self.state().topics.get(topic).map(|topic| topic.log.clone()).unwrap_or_default()
    }

    /// A panic while the lock was held cannot leave the state half-changed (each change is one
    /// push or insert), so a poisoned lock is still consistent.
    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn notify(&self) {
        self.inner.changed.send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    fn append(&self, state: &mut State, message: BusMessage) {
        let partition = {
            let topic = state.topic(&message.topic, self.partitions);
            partition_for(&message.key, topic.partitions.len() as u32)
        };
        let topic = state.topic(&message.topic, self.partitions);
        let index = topic.log.len();
        topic.partitions[partition as usize].push(index);
        topic.log.push(message);
    }

    /// The member's next message: the first undelivered one in its partitions, starting after
    /// the partition it was last served from, so that no partition starves another.
    fn next_for(&self, group: &str, member: u64, cursor: &mut usize) -> Option<Pending> {
        let mut state = self.state();
        let owned = state.owned_by(group, member);
        let count = owned.len();
        for step in 0..count {
            let index = (*cursor + step) % count;
            let (topic_name, partition) = &owned[index];
            let offset = state
                .groups
                .get(group)
                .and_then(|g| g.committed.get(&(topic_name.clone(), *partition)).copied())
                .unwrap_or(0);
            let topic = state.topic(topic_name, self.partitions);
            let Some(&log_index) = topic
                .partitions
                .get(*partition as usize)
                .and_then(|indexes| indexes.get(usize::try_from(offset).unwrap_or(usize::MAX)))
            else {
                continue;
            };
            *cursor = index + 1;
            return Some(Pending {
                message: topic.log[log_index].clone(),
                partition: *partition,
                offset,
            });
        }
        None
    }

    fn owns(&self, group: &str, member: u64, topic: &str, partition: u32) -> bool {
        self.state().owned_by(group, member).iter().any(|(t, p)| t == topic && *p == partition)
    }

    fn commit(&self, group: &str, topic: &str, partition: u32, next: u64) {
        let mut state = self.state();
        if let Some(group) = state.groups.get_mut(group) {
            let committed = group.committed.entry((topic.to_owned(), partition)).or_insert(0);
            *committed = (*committed).max(next);
        }
    }

    /// Delivers the member's messages one at a time until the subscription is dropped.
    ///
    /// `membership` is created with the member, before the task starts: a subscription dropped
    /// before its task first ran still leaves the group.
    async fn consume(
        self,
        membership: Membership,
        sender: mpsc::Sender<Result<Delivery, BusError>>,
    ) {
        let (group, member) = (membership.group.clone(), membership.member);
        let mut changed = self.inner.changed.subscribe();
        let mut cursor = 0;
        loop {
            changed.borrow_and_update();
            let Some(pending) = self.next_for(&group, member, &mut cursor) else {
                if changed.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let mut attempt = 1;
            loop {
                let (delivery, answer) = Delivery::new(
                    pending.message.clone(),
                    pending.partition,
                    pending.offset,
                    attempt,
                );
                if sender.send(Ok(delivery)).await.is_err() {
                    return;
                }
                let error = match answer.await {
                    Answer::Ack => {
                        self.commit(
                            &group,
                            &pending.message.topic,
                            pending.partition,
                            pending.offset + 1,
                        );
                        break;
                    }
                    Answer::Nack(error) => error,
                    Answer::Dropped => "the delivery was dropped without an answer".to_owned(),
                };
                if attempt >= self.policy.attempts() {
                    tracing::warn!(
                        topic = %pending.message.topic,
                        partition = pending.partition,
                        offset = pending.offset,
                        attempts = attempt,
                        %error,
                        "dead-lettering a message that kept failing"
                    );
                    let letter = self.policy.dead_letter(
                        &pending.message,
                        pending.partition,
                        pending.offset,
                        attempt,
                        &error,
                    );
                    self.append(&mut self.state(), letter);
                    self.commit(
                        &group,
                        &pending.message.topic,
                        pending.partition,
                        pending.offset + 1,
                    );
                    self.notify();
                    break;
                }
                attempt += 1;
                self.policy.backoff().wait_before(attempt, &*self.clock).await;
                if !self.owns(&group, member, &pending.message.topic, pending.partition) {
                    // Rebalanced away while backing off: the new owner delivers it.
                    break;
                }
            }
        }
    }
}

struct Pending {
    message: BusMessage,
    partition: u32,
    offset: u64,
}

/// Removes a member from its group when its consumer loop ends (the subscription was dropped
/// and the loop aborted), handing its partitions to the others.
struct Membership {
    bus: InMemoryBus,
    group: String,
    member: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(group) = self.bus.state().groups.get_mut(&self.group) {
            group.members.retain(|(id, _)| *id != self.member);
        }
        self.bus.notify();
    }
}

impl State {
    fn topic(&mut self, name: &str, partitions: u32) -> &mut Topic {
        self.topics.entry(name.to_owned()).or_insert_with(|| Topic {
            log: Vec::new(),
            partitions: vec![Vec::new(); partitions as usize],
        })
    }

    /// The (topic, partition) pairs `member` of `group` owns: of each topic's members, in
    /// joining order, the `i`-th of `n` owns the partitions `p` with `p mod n == i`.
    fn owned_by(&mut self, group: &str, member: u64) -> Vec<(String, u32)> {
        let Some(members) = self.groups.get(group).map(|group| group.members.clone()) else {
            return Vec::new();
        };
        let Some((_, topics)) = members.iter().find(|(id, _)| *id == member) else {
            return Vec::new();
        };
        let mut owned = Vec::new();
        for topic in topics {
            let sharing: Vec<u64> = members
                .iter()
                .filter(|(_, topics)| topics.contains(topic))
                .map(|(id, _)| *id)
                .collect();
            let Some(rank) = sharing.iter().position(|id| *id == member) else {
                continue;
            };
            let count = self.topics.get(topic).map_or(0, |topic| topic.partitions.len());
            owned.extend(
                (0..count as u32)
                    .filter(|p| *p as usize % sharing.len() == rank)
                    .map(|p| (topic.clone(), p)),
            );
        }
        owned
    }
}

/// FNV-1a: stable across processes and releases, unlike `std`'s hasher.
fn partition_for(key: &str, partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions.max(1)
}

impl EventBus for InMemoryBus {
    async fn publish(&self, messages: Vec<BusMessage>) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        {
            let mut state = self.state();
            for message in messages {
                self.append(&mut state, message);
            }
        }
        self.notify();
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
        let group = group.map_or_else(|| super::default_group(topics), str::to_owned);
        let member = {
            let mut state = self.state();
            for topic in topics {
                state.topic(topic, self.partitions);
            }
            let member = state.next_member;
            state.next_member += 1;
            let mut names: Vec<String> = topics.iter().map(|topic| (*topic).to_owned()).collect();
            names.sort_unstable();
            names.dedup();
            state.groups.entry(group.clone()).or_default().members.push((member, names));
            member
        };
        self.notify();
        let (sender, subscription) = Subscription::channel(group.clone(), 1);
        let membership = Membership { bus: self.clone(), group, member };
        let task = tokio::spawn(self.clone().consume(membership, sender));
        Ok(subscription.abort_on_drop(task.abort_handle()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backoff::Backoff;
    use crate::bus::headers;

    fn message(key: &str, body: &str) -> BusMessage {
        BusMessage::new("t", key, body.as_bytes().to_vec())
    }

    async fn next(subscription: &mut Subscription) -> Delivery {
        tokio::time::timeout(Duration::from_secs(5), subscription.next())
            .await
            .expect("a delivery within 5 s")
            .expect("subscription open")
            .expect("no error")
    }

    async fn nothing_for(subscription: &mut Subscription) {
        let waited = tokio::time::timeout(Duration::from_millis(50), subscription.next()).await;
        assert!(waited.is_err(), "expected no delivery");
    }

    #[tokio::test]
    async fn per_key_order_is_kept_and_each_group_sees_everything() {
        let bus = InMemoryBus::new();
        let mut one = bus.subscribe(Some("one"), &["t"]).await.unwrap();
        let mut two = bus.subscribe(None, &["t"]).await.unwrap();
        assert_eq!(two.group(), "composable.t");
        let sent: Vec<BusMessage> = (0..20).map(|n| message("k", &n.to_string())).collect();
        bus.publish(sent.clone()).await.unwrap();
        for subscription in [&mut one, &mut two] {
            for expected in &sent {
                let delivery = next(subscription).await;
                assert_eq!(delivery.message(), expected);
                delivery.ack();
            }
        }
        assert_eq!(bus.messages("t"), sent);
    }

    #[tokio::test]
    async fn members_of_a_group_split_the_partitions_and_take_over_when_one_leaves() {
        let bus = InMemoryBus::new().with_partitions(2);
        let mut a = bus.subscribe(Some("g"), &["t"]).await.unwrap();
        let mut b = bus.subscribe(Some("g"), &["t"]).await.unwrap();
        let keys: Vec<String> = (0..10).map(|n| format!("k{n}")).collect();
        bus.publish(keys.iter().map(|key| message(key, key)).collect()).await.unwrap();
        let to_a = keys.iter().filter(|key| bus.partition_of("t", key) == 0).count();
        assert!(to_a > 0 && to_a < keys.len(), "the keys spread over both partitions");
        for _ in 0..to_a {
            let delivery = next(&mut a).await;
            assert_eq!(delivery.partition(), 0);
            delivery.ack();
        }
        nothing_for(&mut a).await;
        // b takes one delivery and leaves without acknowledging it: a gets it and the rest.
        let unanswered = next(&mut b).await;
        assert_eq!(unanswered.partition(), 1);
        let key = unanswered.message().key.clone();
        drop(b);
        let again = next(&mut a).await;
        assert_eq!(again.message().key, key);
        drop(unanswered);
        again.ack();
        for _ in 1..keys.len() - to_a {
            next(&mut a).await.ack();
        }
        nothing_for(&mut a).await;
    }

    #[tokio::test]
    async fn a_nacked_delivery_comes_back_then_goes_to_the_dead_letter_topic() {
        let policy = RedeliveryPolicy::default()
            .retry(Backoff::exponential(Duration::from_millis(1)).attempts(3));
        let bus = InMemoryBus::new().with_redelivery(policy);
        let mut subscription = bus.subscribe(Some("g"), &["t"]).await.unwrap();
        bus.publish(vec![message("k", "poison"), message("k", "fine")]).await.unwrap();
        for attempt in 1..=3 {
            let delivery = next(&mut subscription).await;
            assert_eq!(
                (delivery.attempt(), delivery.message().payload.as_slice()),
                (attempt, &b"poison"[..])
            );
            if attempt == 2 {
                drop(delivery);
            } else {
                delivery.nack("cannot handle it");
            }
        }
        let delivery = next(&mut subscription).await;
        assert_eq!(delivery.message().payload, b"fine");
        delivery.ack();
        let dead = bus.messages("t-dlq");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].payload, b"poison");
        assert_eq!(dead[0].header(headers::DLQ_ERROR), Some(&b"cannot handle it"[..]));
        assert_eq!(dead[0].header(headers::DLQ_ATTEMPTS), Some(&b"3"[..]));
    }

    #[tokio::test]
    async fn an_empty_subscription_is_refused() {
        let bus = InMemoryBus::new();
        assert!(matches!(
            bus.subscribe(None, &[]).await,
            Err(BusError::InvalidSubscription { .. })
        ));
    }
}
