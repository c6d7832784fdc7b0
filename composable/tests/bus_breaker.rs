//! Publishing through a circuit breaker: a relay whose broker goes down stops calling it once
//! the breaker opens, fails fast meanwhile (and so backs off), and publishes everything once the
//! broker is back and a probe gets through — stepped on a test clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use composable::breaker::{BreakerPolicy, BreakerState, CircuitBreaker};
use composable::bus::{BusError, BusMessage, EventBus, InMemoryBus, Subscription, WithBreaker};
use composable::checkpoint::InMemoryCheckpointStore;
use composable::consumer::ConsumerError;
use composable::relay::Relay;
use composable::{
    EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, StreamId, TestClock,
};

/// A broker that can be taken down, or made to refuse every message, and counts the publishes
/// that reach it.
#[derive(Debug, Clone, Default)]
struct Broker {
    bus: InMemoryBus,
    down: Arc<AtomicBool>,
    refusing: Arc<AtomicBool>,
    calls: Arc<AtomicU32>,
}

impl Broker {
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl EventBus for Broker {
    async fn publish(&self, messages: Vec<BusMessage>) -> Result<(), BusError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(BusError::Unavailable {
                operation: "publish",
                source: "connection refused".into(),
            });
        }
        if self.refusing.load(Ordering::SeqCst) {
            return Err(BusError::Rejected {
                topic: messages[0].topic.clone(),
                source: "message too large".into(),
            });
        }
        self.bus.publish(messages).await
    }

    async fn subscribe(
        &self,
        group: Option<&str>,
        topics: &[&str],
    ) -> Result<Subscription, BusError> {
        self.bus.subscribe(group, topics).await
    }
}

fn placed() -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        name: "order.placed".into(),
        version: 1,
        format: "raw".into(),
        payload: b"placed".to_vec(),
        metadata: EventMetadata::new_flow(chrono::Utc::now()),
    }
}

fn breaker(clock: &TestClock) -> CircuitBreaker {
    let policy = BreakerPolicy::default().window(2).open_for(Duration::from_secs(10));
    CircuitBreaker::new("publish", policy).with_clock(clock.clone())
}

#[tokio::test]
async fn a_relay_stops_calling_a_broker_that_is_down_and_catches_up_when_it_is_back() {
    let clock = TestClock::new();
    let store = InMemoryEventStore::new();
    let stream = StreamId::new("order", 1).expect("a stream id");
    store.append(&stream, ExpectedVersion::NoStream, vec![placed()]).await.expect("appended");
    let broker = Broker::default();
    let bus = WithBreaker::new(broker.clone(), breaker(&clock));
    let mut relay = Relay::new(store.clone(), bus.clone(), InMemoryCheckpointStore::new());

    broker.down.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        assert!(relay.run_once().await.is_err(), "the broker is down");
    }
    assert_eq!(bus.breaker().state(), BreakerState::Open);
    assert_eq!(broker.calls(), 2);
    // Open: the relay's batch fails at once, as a transient failure it backs off from, without
    // a call to the broker.
    match relay.run_once().await {
        Err(ConsumerError::Handler { source, .. }) => {
            assert!(source.is_transient(), "{source}");
            assert!(source.to_string().contains("circuit breaker `publish` is open"), "{source}");
        }
        other => panic!("the open breaker refuses the batch: {other:?}"),
    }
    assert_eq!(broker.calls(), 2, "no call reached the broker while open");

    broker.down.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(10)).await;
    assert_eq!(bus.breaker().state(), BreakerState::HalfOpen);
    let batch = relay.run_once().await.expect("the probe publishes the batch");
    assert_eq!(batch.published, 1);
    assert_eq!(bus.breaker().state(), BreakerState::Closed);
    assert_eq!(broker.bus.messages("order-events").len(), 1, "published once, when back");
}

#[tokio::test]
async fn messages_the_broker_refuses_for_good_do_not_open_the_breaker() {
    let clock = TestClock::new();
    let broker = Broker::default();
    let bus = WithBreaker::new(broker.clone(), breaker(&clock));
    broker.refusing.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        let refused =
            bus.publish(vec![BusMessage::new("order-events", "order-1", vec![0; 8])]).await;
        assert!(matches!(refused, Err(BusError::Rejected { .. })), "{refused:?}");
    }
    assert_eq!(bus.breaker().state(), BreakerState::Closed);
    assert_eq!(broker.calls(), 5);
}
