//! The conformance suite every [`EventBus`] passes: the in-memory twin and `composable-kafka`.
//!
//! Each check is a `pub async fn` taking a factory that, given a [`BusSetup`] (fresh topic names
//! and the redelivery policy to use), returns a bus on which those topics exist; it panics with a
//! message naming the broken guarantee. [`bus_conformance!`](crate::bus_conformance) expands to
//! one `#[tokio::test]` per check:
//!
//! ```ignore
//! composable_conformance::bus_conformance!(|setup: composable_conformance::bus::BusSetup| async move {
//!     composable::bus::InMemoryBus::new().with_redelivery(setup.policy)
//! });
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use composable::backoff::Backoff;
use composable::bus::{BusMessage, Delivery, EventBus, RedeliveryPolicy, Subscription, headers};

/// How long a check waits for one delivery.
const WAIT: Duration = Duration::from_secs(30);

/// What a check needs its bus to have.
#[derive(Debug, Clone)]
pub struct BusSetup {
    /// Topics that must exist (dead-letter topics included), unique to the check's run.
    pub topics: Vec<String>,
    /// The redelivery policy the bus must use.
    pub policy: RedeliveryPolicy,
}

/// Expands to one `#[tokio::test]` per check, each calling it with the given factory (an
/// expression evaluating to `impl Fn(BusSetup) -> impl Future<Output = impl EventBus>`).
#[macro_export]
macro_rules! bus_conformance {
    ($factory:expr) => {
        $crate::bus_conformance!(@tests $factory;
            a_message_arrives_with_its_key_headers_and_payload,
            messages_of_one_key_arrive_in_publish_order,
            every_group_sees_every_message,
            members_of_one_group_share_the_messages,
            a_delivery_dropped_unanswered_goes_to_the_next_member,
            a_refused_delivery_is_redelivered_then_dead_lettered,
        );
    };
    (@tests $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::bus::$check($factory).await;
            }
        )*
    };
}

fn unique(what: &str) -> String {
    format!("conformance-{what}-{}", uuid::Uuid::now_v7().simple())
}

/// A policy that redelivers quickly, three attempts in all.
fn quick_policy() -> RedeliveryPolicy {
    RedeliveryPolicy::default().retry(Backoff::constant(Duration::from_millis(10)).attempts(3))
}

async fn next(subscription: &mut Subscription, what: &str) -> Delivery {
    match tokio::time::timeout(WAIT, subscription.next()).await {
        Err(_) => panic!("{what}: nothing delivered within {WAIT:?}"),
        Ok(None) => panic!("{what}: the subscription closed"),
        Ok(Some(Err(error))) => panic!("{what}: the bus reported {error}"),
        Ok(Some(Ok(delivery))) => delivery,
    }
}

async fn bus_with<B, F, Fut>(factory: &F, topics: &[&str]) -> B
where
    B: EventBus,
    F: Fn(BusSetup) -> Fut,
    Fut: Future<Output = B>,
{
    let policy = quick_policy();
    let mut all: Vec<String> = topics.iter().map(|topic| (*topic).to_owned()).collect();
    all.extend(topics.iter().map(|topic| policy.dead_letter_topic(topic)));
    factory(BusSetup { topics: all, policy }).await
}

/// A published message arrives whole: topic, key, headers in order, payload.
pub async fn a_message_arrives_with_its_key_headers_and_payload<B, F, Fut>(factory: F)
where
    B: EventBus,
    F: Fn(BusSetup) -> Fut,
    Fut: Future<Output = B>,
{
    let topic = unique("roundtrip");
    let bus = bus_with(&factory, &[&topic]).await;
    let message = BusMessage::new(&topic, "order-1", b"placed".to_vec())
        .with_header("event-id", "e1")
        .with_header("event-name", "order.placed");
    let mut subscription = bus.subscribe(None, &[&topic]).await.expect("subscribe");
    bus.publish(vec![message.clone()]).await.expect("publish");
    let delivery = next(&mut subscription, "the message").await;
    assert_eq!(delivery.message(), &message, "the message arrives as published");
    assert_eq!(delivery.attempt(), 1);
    delivery.ack();
}

/// Messages with one key reach a subscriber in the order they were published.
pub async fn messages_of_one_key_arrive_in_publish_order<B, F, Fut>(factory: F)
where
    B: EventBus,
    F: Fn(BusSetup) -> Fut,
    Fut: Future<Output = B>,
{
    let topic = unique("order");
    let bus = bus_with(&factory, &[&topic]).await;
    let messages: Vec<BusMessage> = (0..30)
        .map(|n| BusMessage::new(&topic, format!("k{}", n % 3), n.to_string().into_bytes()))
        .collect();
    bus.publish(messages).await.expect("publish");
    let mut subscription = bus.subscribe(None, &[&topic]).await.expect("subscribe");
    let mut seen: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for _ in 0..30 {
        let delivery = next(&mut subscription, "a message").await;
        let n = String::from_utf8_lossy(&delivery.message().payload).parse().expect("a number");
        seen.entry(delivery.message().key.clone()).or_default().push(n);
        delivery.ack();
    }
    for (key, numbers) in &seen {
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        assert_eq!(numbers, &sorted, "key {key}'s messages out of publish order");
    }
    assert_eq!(seen.values().map(Vec::len).sum::<usize>(), 30);
}

/// Two groups each receive every message.
pub async fn every_group_sees_every_message<B, F, Fut>(factory: F)
where
    B: EventBus,
    F: Fn(BusSetup) -> Fut,
    Fut: Future<Output = B>,
{
    let topic = unique("groups");
    let bus = bus_with(&factory, &[&topic]).await;
    bus.publish((0..5).map(|n| BusMessage::new(&topic, format!("k{n}"), vec![n])).collect())
        .await
        .expect("publish");
    for group in [unique("billing"), unique("audit")] {
        let mut subscription = bus.subscribe(Some(&group), &[&topic]).await.expect("subscribe");
        let mut payloads = BTreeSet::new();
        for _ in 0..5 {
            let delivery = next(&mut subscription, "a message").await;
            payloads.insert(delivery.message().payload.clone());
            delivery.ack();
        }
        assert_eq!(payloads.len(), 5, "group {group} sees every message once");
    }
}

/// Two members of one group together receive each message once.
pub async fn members_of_one_group_share_the_messages<B, F, Fut>(factory: F)
where
    B: EventBus,
    F: Fn(BusSetup) -> Fut,
    Fut: Future<Output = B>,
{
    let topic = unique("share");
    let bus = bus_with(&factory, &[&topic]).await;
    let group = unique("workers");
    let mut a = bus.subscribe(Some(&group), &[&topic]).await.expect("subscribe a");
    let mut b = bus.subscribe(Some(&group), &[&topic]).await.expect("subscribe b");
    let count = 40u8;
    bus.publish((0..count).map(|n| BusMessage::new(&topic, format!("k{n}"), vec![n])).collect())
        .await
        .expect("publish");
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < usize::from(count) {
        assert!(tokio::time::Instant::now() < deadline, "only {} of {count} delivered", seen.len());
        let delivery = tokio::select! {
            Some(Ok(delivery)) = a.next() => delivery,
            Some(Ok(delivery)) = b.next() => delivery,
            () = tokio::time::sleep(Duration::from_millis(100)) => continue,
        };
        assert!(seen.insert(delivery.message().payload.clone()), "a message reached both members");
        delivery.ack();
    }
}

/// A delivery its subscriber dropped without an answer, before leaving the group, goes to the
/// next member, and what was acknowledged does not come again.
pub async fn a_delivery_dropped_unanswered_goes_to_the_next_member<B, F, Fut>(factory: F)
where
    B: EventBus,
    F: Fn(BusSetup) -> Fut,
    Fut: Future<Output = B>,
{
    let topic = unique("handover");
    let bus = bus_with(&factory, &[&topic]).await;
    let group = unique("group");
    let mut first = bus.subscribe(Some(&group), &[&topic]).await.expect("subscribe");
    bus.publish(vec![BusMessage::new(&topic, "k", b"first".to_vec())]).await.expect("publish");
    next(&mut first, "the first message").await.ack();
    bus.publish(vec![BusMessage::new(&topic, "k", b"second".to_vec())]).await.expect("publish");
    let unanswered = next(&mut first, "the second message").await;
    assert_eq!(unanswered.message().payload, b"second");
    drop(first);
    drop(unanswered);

    let mut second = bus.subscribe(Some(&group), &[&topic]).await.expect("subscribe again");
    let again = next(&mut second, "the unanswered message, again").await;
    assert_eq!(again.message().payload, b"second", "the acknowledged message came again");
    again.ack();
}

/// A refused delivery comes again; after the policy's last attempt it goes to the dead-letter
/// topic with its error, and the messages after it are delivered.
pub async fn a_refused_delivery_is_redelivered_then_dead_lettered<B, F, Fut>(factory: F)
where
    B: EventBus,
    F: Fn(BusSetup) -> Fut,
    Fut: Future<Output = B>,
{
    let topic = unique("poison");
    let bus = bus_with(&factory, &[&topic]).await;
    let dead_letters = quick_policy().dead_letter_topic(&topic);
    bus.publish(vec![
        BusMessage::new(&topic, "k", b"poison".to_vec()).with_header("event-id", "e1"),
        BusMessage::new(&topic, "k", b"fine".to_vec()),
    ])
    .await
    .expect("publish");
    let mut subscription = bus.subscribe(None, &[&topic]).await.expect("subscribe");
    for attempt in 1..=3 {
        let delivery = next(&mut subscription, "the poison message").await;
        assert_eq!(
            (delivery.message().payload.as_slice(), delivery.attempt()),
            (&b"poison"[..], attempt)
        );
        delivery.nack(format!("cannot parse, attempt {attempt}"));
    }
    let fine = next(&mut subscription, "the message after the poison").await;
    assert_eq!(fine.message().payload, b"fine");
    fine.ack();

    let mut dead = bus.subscribe(None, &[&dead_letters]).await.expect("subscribe");
    let letter = next(&mut dead, "the dead letter").await;
    let message = letter.message();
    assert_eq!((message.key.as_str(), message.payload.as_slice()), ("k", &b"poison"[..]));
    assert_eq!(message.header("event-id"), Some(&b"e1"[..]));
    assert_eq!(message.header(headers::DLQ_ERROR), Some(&b"cannot parse, attempt 3"[..]));
    assert_eq!(message.header(headers::DLQ_ATTEMPTS), Some(&b"3"[..]));
    assert_eq!(message.header(headers::DLQ_TOPIC), Some(topic.as_bytes()));
    letter.ack();
}
