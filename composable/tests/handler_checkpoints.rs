//! A handler that saves its consumer's checkpoint itself, in the same "transaction" as its
//! effects (here one lock over a read model and its checkpoint): each event takes effect once,
//! a restart resumes after the last applied batch, and a checkpoint another process moved on
//! is noticed (`Saved::Moved`) rather than overwritten.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use composable::checkpoint::{CheckpointError, CheckpointStore, InMemoryCheckpointStore};
use composable::consumer::{Checkpoint, EventHandler, LogConsumer, Saved};
use composable::{
    EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Position,
    RecordedEvent, StreamId, service,
};
use uuid::Uuid;

/// A read model and its checkpoint, changed together.
#[derive(Debug, Default)]
struct Model {
    applied: Vec<Uuid>,
    checkpoint: Option<Position>,
}

/// The read model's checkpoint, as the consumer reads it; saving belongs to the handler.
#[derive(Clone, Default)]
struct ModelCheckpoints {
    model: Arc<Mutex<Model>>,
    claims: InMemoryCheckpointStore,
}

impl CheckpointStore for ModelCheckpoints {
    async fn load(&self, _name: &str) -> Result<Position, CheckpointError> {
        Ok(self.model.lock().expect("the model").checkpoint.unwrap_or(Position::START))
    }

    async fn save(&self, name: &str, _position: Position) -> Result<(), CheckpointError> {
        panic!("checkpoint `{name}` is saved by its handler, with the read model")
    }

    async fn claim(
        &self,
        name: &str,
        holder: Uuid,
        ttl: Duration,
    ) -> Result<bool, CheckpointError> {
        self.claims.claim(name, holder, ttl).await
    }

    async fn release(&self, name: &str, holder: Uuid) -> Result<(), CheckpointError> {
        self.claims.release(name, holder).await
    }
}

struct Project(Arc<Mutex<Model>>);

impl EventHandler for Project {
    type Error = std::convert::Infallible;

    async fn handle(&mut self, _events: &[RecordedEvent]) -> Result<(), Self::Error> {
        unreachable!("the consumer calls handle_at")
    }

    async fn handle_at(
        &mut self,
        at: Checkpoint<'_>,
        events: &[RecordedEvent],
    ) -> Result<Saved, Self::Error> {
        let mut model = self.0.lock().expect("the model");
        if model.checkpoint.unwrap_or(Position::START) != at.after {
            return Ok(Saved::Moved);
        }
        model.applied.extend(events.iter().map(|event| event.event_id));
        model.checkpoint = Some(at.to);
        Ok(Saved::ByHandler)
    }
}

fn events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|_| NewEvent {
            event_id: Uuid::now_v7(),
            name: "thing.happened".into(),
            version: 1,
            format: "raw".into(),
            payload: vec![],
            metadata: EventMetadata::new_flow(Utc::now()),
        })
        .collect()
}

async fn append(store: &InMemoryEventStore, count: usize) -> Vec<Uuid> {
    let batch = events(count);
    let ids = batch.iter().map(|event| event.event_id).collect();
    let stream = StreamId::new("thing", 1).expect("a stream id");
    store.append(&stream, ExpectedVersion::Any, batch).await.expect("an append");
    ids
}

#[tokio::test]
async fn the_handler_saves_the_checkpoint_with_its_effects_and_a_restart_resumes_there() {
    let store = InMemoryEventStore::new();
    let checkpoints = ModelCheckpoints::default();
    let mut expected = append(&store, 5).await;
    let consumer = || {
        LogConsumer::new(
            "model",
            store.clone(),
            checkpoints.clone(),
            Project(Arc::clone(&checkpoints.model)),
        )
        .batch_size(2)
    };
    let mut first = consumer();
    assert_eq!(first.run_once().await.unwrap(), 2);
    assert_eq!(first.catch_up().await.unwrap(), 3);

    // A new process: resumes after the handler's checkpoint, as a service.
    expected.extend(append(&store, 3).await);
    let head = store.head().await.unwrap();
    let mut running = service::spawn(consumer());
    running.wait_until(|health| health.position == Some(head)).await;
    running.stop().await.unwrap();
    let model = checkpoints.model.lock().unwrap();
    assert_eq!(model.applied, expected, "each event once, in order");
    assert_eq!(model.checkpoint, Some(head));
}

#[tokio::test]
async fn a_checkpoint_moved_on_elsewhere_is_not_overwritten_and_the_consumer_follows_it() {
    let store = InMemoryEventStore::new();
    let checkpoints = ModelCheckpoints::default();
    let ids = append(&store, 4).await;
    let mut consumer = LogConsumer::new(
        "model",
        store.clone(),
        checkpoints.clone(),
        Project(Arc::clone(&checkpoints.model)),
    )
    .batch_size(2);
    assert_eq!(consumer.run_once().await.unwrap(), 2);

    // Another process applied the next two events meanwhile and moved the checkpoint.
    let head = store.head().await.unwrap();
    {
        let mut model = checkpoints.model.lock().unwrap();
        model.applied.extend(&ids[2..]);
        model.checkpoint = Some(head);
    }
    assert_eq!(consumer.run_once().await.unwrap(), 0, "moved: nothing applied");
    assert_eq!(consumer.run_once().await.unwrap(), 0, "resumed at the moved checkpoint");
    let tail = append(&store, 1).await;
    assert_eq!(consumer.run_once().await.unwrap(), 1);
    let model = checkpoints.model.lock().unwrap();
    let expected: Vec<Uuid> = ids.iter().chain(&tail).copied().collect();
    assert_eq!(model.applied, expected, "nothing applied twice");
}
