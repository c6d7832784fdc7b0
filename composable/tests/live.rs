//! An aggregate hosted in a store: commands wait for loads and commits, conflicts reload.

mod support;

use std::sync::Arc;

use composable::live::CommandOutcome;
use composable::live::{LiveAction, LiveAggregate, LiveReducer};
use composable::runner::Loaded;
use composable::testing::TestStore;
use composable::{
    AggregateRunner, Bincode, EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore,
    NewEvent, StreamId, Version,
};
use support::account::*;

type Runner = AggregateRunner<Account, InMemoryEventStore>;
type Host = TestStore<LiveReducer<Account, InMemoryEventStore, Bincode>>;

fn host(store: &InMemoryEventStore) -> (Arc<Runner>, Host) {
    let runner = Arc::new(AggregateRunner::new(store.clone(), ()));
    let reducer = LiveReducer::new(Arc::clone(&runner), "h").expect("valid id");
    (runner, TestStore::new(reducer, LiveAggregate::default(), ()))
}

fn loaded(state: Account, version: u64) -> Loaded<Account> {
    Loaded { state, version: Version(version), snapshot: None }
}

async fn load_empty(test: &mut Host) {
    test.send(LiveAction::Load, |s| s.busy = true).await;
    test.receive(LiveAction::Loaded(loaded(Account::default(), 0)), |s| {
        s.loaded = true;
        s.busy = false;
    })
    .await;
}

#[tokio::test]
async fn a_command_before_the_load_waits_for_it_then_commits() {
    let store = InMemoryEventStore::new();
    let (_, mut test) = host(&store);
    test.send(LiveAction::Command(AccountCommand::Deposit(5)), |s| {
        s.busy = true;
        s.waiting.push_back(AccountCommand::Deposit(5));
    })
    .await;
    test.receive(LiveAction::Loaded(loaded(Account::default(), 0)), |s| {
        s.loaded = true;
        s.busy = false;
        s.waiting.clear();
    })
    .await;
    test.receive(LiveAction::Command(AccountCommand::Deposit(5)), |s| s.busy = true).await;
    let committed =
        LiveAction::Committed { events: vec![Deposited { amount: 5 }.into()], version: Version(1) };
    test.receive(committed, |s| {
        s.state = Account { balance: 5, movements: 1 };
        s.version = Version(1);
        s.last = Some(CommandOutcome::Committed(Version(1)));
        s.busy = false;
    })
    .await;
    test.finish().await;
    let stream = StreamId::new("account", "h").expect("stream");
    assert_eq!(store.stream_version(&stream).await.expect("version"), Version(1));
}

#[tokio::test]
async fn a_rejected_command_changes_nothing_but_the_outcome() {
    let store = InMemoryEventStore::new();
    let (_, mut test) = host(&store);
    load_empty(&mut test).await;
    test.send(LiveAction::Command(AccountCommand::Withdraw(1)), |s| {
        s.last =
            Some(CommandOutcome::Rejected("insufficient funds: balance 0, requested 1".into()));
    })
    .await;
    test.finish().await;
}

#[tokio::test]
async fn a_conflict_with_another_writer_reloads() {
    let store = InMemoryEventStore::new();
    let (runner, mut test) = host(&store);
    load_empty(&mut test).await;
    // Another process deposits behind this store's back.
    runner.execute("h", AccountCommand::Deposit(10)).await.expect("rival");
    test.send(LiveAction::Command(AccountCommand::Deposit(1)), |s| s.busy = true).await;
    let message =
        "stream `account-h` changed concurrently: loaded version 0, found 1 (1 attempt(s))";
    test.receive_with(
        |action| matches!(action, LiveAction::CommitFailed(e) if e.to_string() == message),
        |s| s.last = Some(CommandOutcome::Failed(message.into())),
    )
    .await;
    test.receive(LiveAction::Loaded(loaded(Account { balance: 10, movements: 1 }, 1)), |s| {
        s.state = Account { balance: 10, movements: 1 };
        s.version = Version(1);
        s.busy = false;
    })
    .await;
    test.finish().await;
}

const DECODE_FAILURE: &str = "cannot decode event `account.deposited` v1 at `account-h` version 1";

#[tokio::test]
async fn a_failed_load_is_reported_once_and_drops_waiting_commands() {
    let store = InMemoryEventStore::new();
    let corrupt = NewEvent {
        event_id: uuid::Uuid::now_v7(),
        name: "account.deposited".into(),
        version: 1,
        format: "bincode2".into(),
        payload: vec![0xff; 4],
        metadata: EventMetadata::new_flow(chrono::Utc::now()),
    };
    let stream = StreamId::new("account", "h").expect("stream");
    store.append(&stream, ExpectedVersion::NoStream, vec![corrupt]).await.expect("append");
    let (_, mut test) = host(&store);
    test.send(LiveAction::Command(AccountCommand::Deposit(1)), |s| {
        s.busy = true;
        s.waiting.push_back(AccountCommand::Deposit(1));
    })
    .await;
    let failure = std::cell::RefCell::new(String::new());
    test.receive_with(
        |action| match action {
            LiveAction::LoadFailed(error) => {
                *failure.borrow_mut() = error.to_string();
                true
            }
            _ => false,
        },
        |s| {
            s.busy = false;
            s.waiting.clear();
            s.last = Some(CommandOutcome::Failed(failure.borrow().clone()));
        },
    )
    .await;
    // The message names the stream, version and event (then the event id and codec detail).
    let failure = failure.into_inner();
    assert!(failure.starts_with(DECODE_FAILURE), "{failure}");
    test.finish().await;
}
