//! A saga step reading its event's envelope: live, after a reload (the record keeps the
//! envelope, so replay hands the handler the same one), and from records written before records
//! kept it (version 1 of `saga.handled`, looked up in the store, or a typed error).

use chrono::{TimeZone, Utc};
use composable::saga::{Dispatch, InMemoryTimerStore, Reaction, SagaError, SagaRunner, SagaStatus};
use composable::testing::RecordingDispatcher;
use composable::{Bincode, aggregate, apply, command, compensate, event, saga, start, step};
use composable::{
    Codec, EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Position,
    RecordedEvent, StreamId, Version,
};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Default)]
pub struct Account;

#[derive(Debug, Clone, PartialEq)]
pub struct Deposit {
    pub payout: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reverse;

#[event(name = "account.deposited", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    pub payout: String,
}

#[aggregate(stream = "account")]
impl Account {
    #[command]
    fn deposit(&self, command: Deposit) -> Deposited {
        Deposited { payout: command.payout }
    }

    #[command]
    fn reverse(&self, _command: Reverse) -> Deposited {
        Deposited { payout: String::new() }
    }

    #[apply]
    fn deposited(&mut self, _event: &Deposited) {}
}

#[event(name = "payout.requested", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayoutRequested {
    pub payout: String,
    pub account: String,
}

/// Pays into an account, and completes only on a deposit into *that* account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payout {
    account: String,
    /// Where the request sits in the log, read from its envelope.
    requested_at: Option<Position>,
    requested_in: Option<String>,
}

#[saga(name = "payout", key = payout)]
impl Payout {
    #[start]
    fn requested(&mut self, event: &PayoutRequested, envelope: &RecordedEvent) -> Dispatch {
        self.account.clone_from(&event.account);
        self.requested_at = Some(envelope.position);
        self.requested_in = Some(envelope.stream_id.to_string());
        Dispatch::to::<Account>(&event.account, Deposit { payout: event.payout.clone() })
    }

    #[step(end)]
    fn deposited(&mut self, _event: &Deposited, envelope: &RecordedEvent) -> Reaction<()> {
        if envelope.stream_id.id() != self.account {
            return Reaction::ignore(format!("a deposit into {}", envelope.stream_id));
        }
        Reaction::Proceed(())
    }

    #[compensate(requested)]
    fn reverse(&self) -> Dispatch {
        Dispatch::to::<Account>(&self.account, Reverse)
    }
}

type Runner = SagaRunner<Payout, InMemoryEventStore, RecordingDispatcher, InMemoryTimerStore>;

fn runner() -> Runner {
    SagaRunner::new(
        InMemoryEventStore::new(),
        RecordingDispatcher::new(),
        InMemoryTimerStore::new(),
    )
}

async fn record(runner: &Runner, stream: &str, event: NewEvent) -> RecordedEvent {
    let stream = StreamId::parse(stream).expect("a stream id");
    let store = runner.store();
    store.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("appended");
    let events: Vec<RecordedEvent> =
        store.read_stream(&stream, Version::ZERO).try_collect().await.expect("read back");
    events.last().cloned().expect("the event just appended")
}

fn metadata() -> EventMetadata {
    EventMetadata::new_flow(Utc::now())
}

async fn requested(runner: &Runner) -> RecordedEvent {
    let event = PayoutRequested { payout: "p1".into(), account: "ann".into() };
    let new = NewEvent::encode(&PayoutEvent::from(event), &Bincode, metadata()).expect("encoded");
    record(runner, "payout-p1", new).await
}

async fn deposited_into(runner: &Runner, account: &str) -> RecordedEvent {
    let event = Deposited { payout: "p1".into() };
    let new = NewEvent::encode(&PayoutEvent::from(event), &Bincode, metadata()).expect("encoded");
    record(runner, &format!("account-{account}"), new).await
}

#[tokio::test]
async fn a_step_reads_its_envelope_live_and_again_on_replay() {
    let runner = runner();
    let request = requested(&runner).await;
    runner.handle(&request).await.expect("handled").expect("started");

    // Every input reloads the instance: the state below was rebuilt by replaying the record,
    // with the envelope the record kept.
    let summary = runner.load("p1").await.expect("loaded").expect("started");
    assert_eq!(summary.state.requested_at, Some(request.position));
    assert_eq!(summary.state.requested_in.as_deref(), Some("payout-p1"));

    let elsewhere = deposited_into(&runner, "bob").await;
    assert_eq!(runner.handle(&elsewhere).await.expect("handled"), None, "bob's deposit is aside");
    assert_eq!(
        runner.load("p1").await.expect("loaded").map(|s| s.status),
        Some(SagaStatus::Running)
    );

    let deposit = deposited_into(&runner, "ann").await;
    let progress = runner.handle(&deposit).await.expect("handled").expect("the end step");
    assert_eq!(progress.status, SagaStatus::Completed);
}

/// `saga.handled` version 1, as records were written before they kept the envelope: a stored
/// contract, so its layout is spelled out here.
#[derive(Serialize)]
struct HandledV1 {
    step: String,
    event_id: Uuid,
    name: String,
    version: u16,
    format: String,
    payload: Vec<u8>,
    timer: Option<Uuid>,
}

async fn record_v1(runner: &Runner, handled: &RecordedEvent) {
    let v1 = HandledV1 {
        step: "requested".into(),
        event_id: handled.event_id,
        name: handled.name.clone(),
        version: handled.version,
        format: handled.format.clone(),
        payload: handled.payload.clone(),
        timer: None,
    };
    let record = NewEvent {
        event_id: Uuid::now_v7(),
        name: "saga.handled".into(),
        version: 1,
        format: Bincode.format().into(),
        payload: Bincode.encode(&v1).expect("encoded"),
        metadata: EventMetadata::caused_by(
            handled.metadata.correlation_id,
            handled.event_id,
            Utc.timestamp_opt(1_700_000_000, 0).single().expect("a time"),
        ),
    };
    let stream = StreamId::parse("saga.payout-p1").expect("a stream id");
    runner.store().append(&stream, ExpectedVersion::Any, vec![record]).await.expect("appended");
}

#[tokio::test]
async fn a_record_written_before_envelopes_were_kept_replays_with_the_event_from_the_store() {
    let runner = runner();
    let request = requested(&runner).await;
    record_v1(&runner, &request).await;

    let summary = runner.load("p1").await.expect("loaded").expect("started");
    assert_eq!(summary.state.requested_at, Some(request.position));
    assert_eq!(summary.completed, ["requested"]);
}

#[tokio::test]
async fn a_record_whose_envelope_is_lost_is_a_typed_error_not_a_guess() {
    let runner = runner();
    // The event the record names lives in another store (a saga fed from the bus).
    let elsewhere = self::runner();
    let request = requested(&elsewhere).await;
    record_v1(&runner, &request).await;

    match runner.load("p1").await {
        Err(SagaError::Envelope { event_id, stream, .. }) => {
            assert_eq!(event_id, request.event_id);
            assert_eq!(stream.as_str(), "saga.payout-p1");
        }
        other => panic!("expected the envelope to be reported lost, got {other:?}"),
    }
}

#[test]
fn a_handler_reading_its_envelope_fails_plainly_without_one() {
    use composable::Saga;
    let mut payout = Payout::default();
    let request = PayoutRequested { payout: "p1".into(), account: "ann".into() };
    let reaction = payout.handle(&PayoutEvent::from(request), None);
    assert_eq!(
        reaction,
        Err("step `requested` reads its event's envelope, and none was given".to_owned())
    );
}
