//! The Kafka bus against a real broker (`KAFKA_BROKERS`), beyond the conformance suite
//! (`conformance.rs`): headers and order with Kafka's own settings, partitions split between two
//! consumers, committed offsets across three members.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use composable::bus::{BusMessage, EventBus};
use composable_kafka::CommitMode;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_messages_reach_a_subscriber_with_key_headers_and_order() {
    let bus = common::bus().await;
    let topic = common::unique("roundtrip");
    common::create_topics(&bus, &[&topic], 1).await;
    let sent: Vec<BusMessage> = (0..5)
        .map(|n| {
            BusMessage::new(&topic, "order-1", format!("payload {n}").into_bytes())
                .with_header("n", n.to_string())
                .with_header("empty", Vec::new())
        })
        .collect();
    bus.publish(sent.clone()).await.unwrap();

    let mut subscription = bus.subscribe(None, &[&topic]).await.unwrap();
    assert_eq!(subscription.group(), composable::bus::default_group(&[&topic]));
    for (n, expected) in sent.iter().enumerate() {
        let delivery = common::next(&mut subscription, WAIT, "a published message").await;
        assert_eq!(delivery.message(), expected);
        assert_eq!((delivery.partition(), delivery.offset(), delivery.attempt()), (0, n as u64, 1));
        delivery.ack();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_in_one_group_split_the_partitions() {
    let bus = common::bus().await;
    let topic = common::unique("split");
    common::create_topics(&bus, &[&topic], 4).await;
    let group = common::unique("group");

    // Each consumer records the partition of every message it handles, per publishing round.
    type PartitionsByMemberAndRound = HashMap<(usize, u64), BTreeSet<u32>>;
    let seen: Arc<Mutex<PartitionsByMemberAndRound>> = Arc::default();
    let mut consumers = Vec::new();
    for member in 0..2 {
        let mut subscription = bus.subscribe(Some(&group), &[&topic]).await.unwrap();
        let seen = Arc::clone(&seen);
        consumers.push(tokio::spawn(async move {
            while let Some(Ok(delivery)) = subscription.next().await {
                let round: u64 = std::str::from_utf8(delivery.message().header("round").unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                seen.lock()
                    .unwrap()
                    .entry((member, round))
                    .or_default()
                    .insert(delivery.partition());
                delivery.ack();
            }
        }));
    }

    // Publish rounds of 40 keys until one whole round was split between the two members,
    // neither of them reading a partition of the other (the group has settled).
    let started = Instant::now();
    let mut round = 0u64;
    let split = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the group never split the partitions"
        );
        let messages = (0..40)
            .map(|key| {
                BusMessage::new(&topic, format!("key-{key}"), Vec::new())
                    .with_header("round", round.to_string())
            })
            .collect();
        bus.publish(messages).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let seen = seen.lock().unwrap();
        let (a, b) = (seen.get(&(0, round)).cloned(), seen.get(&(1, round)).cloned());
        if let (Some(a), Some(b)) = (a, b)
            && a.is_disjoint(&b)
            && a.len() + b.len() == 4
        {
            break (a, b);
        }
        drop(seen);
        round += 1;
    };
    assert_eq!(split.0.len(), 2, "a range assignment gives each member two partitions: {split:?}");
    for consumer in consumers {
        consumer.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stopped_before_acknowledging_leaves_the_message_to_the_next() {
    let bus = common::bus_with(common::config().commit_mode(CommitMode::Sync)).await;
    let topic = common::unique("redeliver");
    common::create_topics(&bus, &[&topic], 1).await;
    let group = common::unique("group");
    bus.publish(vec![BusMessage::new(&topic, "k", b"first".to_vec())]).await.unwrap();

    // The first consumer receives the message and dies before acknowledging it.
    let mut first = bus.subscribe(Some(&group), &[&topic]).await.unwrap();
    let unanswered = common::next(&mut first, WAIT, "the first message").await;
    assert_eq!(unanswered.message().payload, b"first");
    drop(first);
    drop(unanswered);

    // The next member of the group gets it again, acknowledges it, and stops.
    let mut second = bus.subscribe(Some(&group), &[&topic]).await.unwrap();
    let again = common::next(&mut second, WAIT, "the first message again").await;
    assert_eq!((again.message().payload.as_slice(), again.offset()), (&b"first"[..], 0));
    again.ack();
    bus.publish(vec![BusMessage::new(&topic, "k", b"second".to_vec())]).await.unwrap();
    let next = common::next(&mut second, WAIT, "the second message").await;
    assert_eq!(next.message().payload, b"second");
    drop(second);
    drop(next);

    // The committed offset holds: a third member starts at the unacknowledged second message.
    let mut third = bus.subscribe(Some(&group), &[&topic]).await.unwrap();
    let resumed = common::next(&mut third, WAIT, "the second message again").await;
    assert_eq!((resumed.message().payload.as_slice(), resumed.offset()), (&b"second"[..], 1));
    resumed.ack();
}
