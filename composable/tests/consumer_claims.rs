//! A claimed consumer keeps its claim while a batch takes longer than the claim lasts (a saga's
//! step waiting on replies): the process standing by never takes the same work over meanwhile.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use composable::checkpoint::InMemoryCheckpointStore;
use composable::consumer::{EventHandler, LogConsumer};
use composable::{
    EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, RecordedEvent,
    StreamId, service,
};

/// Notes who handled which event, after taking `delay` over each batch.
struct Slow {
    who: &'static str,
    delay: Duration,
    handled: Arc<Mutex<Vec<(&'static str, uuid::Uuid)>>>,
}

impl EventHandler for Slow {
    type Error = Infallible;

    async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), Infallible> {
        tokio::time::sleep(self.delay).await;
        let mut handled = self.handled.lock().unwrap_or_else(PoisonError::into_inner);
        handled.extend(events.iter().map(|event| (self.who, event.event_id)));
        Ok(())
    }
}

fn event() -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        name: "thing.happened".into(),
        version: 1,
        format: "raw".into(),
        payload: Vec::new(),
        metadata: EventMetadata::new_flow(chrono::Utc::now()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_longer_than_the_claim_keeps_the_claim_and_the_standby_waits() {
    let store = InMemoryEventStore::new();
    let stream = StreamId::new("thing", 1).expect("a stream id");
    store.append(&stream, ExpectedVersion::Any, vec![event(), event()]).await.expect("appended");
    let checkpoints = InMemoryCheckpointStore::new();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let ttl = Duration::from_millis(150);
    let consumer = |who, delay| {
        LogConsumer::new(
            "work",
            store.clone(),
            checkpoints.clone(),
            Slow { who, delay, handled: Arc::clone(&handled) },
        )
        .claimed(uuid::Uuid::now_v7(), ttl)
    };
    // The first holds the claim and takes four times the claim's life over its batch.
    let active = service::spawn(consumer("active", Duration::from_millis(600)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let standby = service::spawn(consumer("standby", Duration::ZERO));
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    let seen = handled.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert_eq!(seen.len(), 2, "each event handled once: {seen:?}");
    assert!(seen.iter().all(|(who, _)| *who == "active"), "the standby waited: {seen:?}");
    assert!(standby.health().standby, "still standing by");
    active.stop().await.expect("stops");
    standby.stop().await.expect("stops");
}
