//! The aggregate runner against the in-memory store.

mod support;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use composable::backoff::Backoff;
use composable::command::CommandContext;
use composable::envelope::Snapshot;
use composable::testing::HookedStore;
use composable::{
    AggregateRunner, Bincode, Codec, CommandError, EventMetadata, EventStore, ExpectedVersion,
    InMemoryEventStore, NewEvent, StreamId, Version,
};
use futures::TryStreamExt;
use support::account::*;
use support::racing::racing;
use uuid::Uuid;

fn runner(store: &InMemoryEventStore) -> AggregateRunner<Account, InMemoryEventStore> {
    AggregateRunner::new(store.clone(), ())
}

fn stream(id: &str) -> StreamId {
    StreamId::new("account", id).expect("valid stream id")
}

#[tokio::test]
async fn commands_append_events_and_state_is_rebuilt_from_them() {
    let store = InMemoryEventStore::new();
    let runner = runner(&store);
    runner.execute("a", AccountCommand::Deposit(10)).await.expect("deposit");
    let done = runner.execute("a", AccountCommand::Withdraw(4)).await.expect("withdraw");
    assert_eq!(done.state, Account { balance: 6, movements: 2 });
    assert_eq!(done.version, Version(2));
    assert_eq!(done.events, [AccountEvent::Withdrawn(Withdrawn { amount: 4 })]);
    let loaded = runner.load("a").await.expect("load");
    assert_eq!((loaded.state, loaded.version), (done.state, Version(2)));
}

#[tokio::test]
async fn a_rejected_command_appends_nothing() {
    let store = InMemoryEventStore::new();
    let runner = runner(&store);
    let error = runner.execute("a", AccountCommand::Withdraw(1)).await.expect_err("rejected");
    assert!(matches!(
        error,
        CommandError::Rejected(AccountError::InsufficientFunds { balance: 0, requested: 1 })
    ));
    assert_eq!(store.stream_version(&stream("a")).await.expect("version"), Version::ZERO);
}

#[tokio::test]
async fn a_command_deciding_nothing_appends_nothing() {
    let store = InMemoryEventStore::new();
    let done = runner(&store).execute("a", AccountCommand::Deposit(0)).await.expect("no-op");
    assert!(done.events.is_empty() && done.append.is_none());
}

#[tokio::test]
async fn events_carry_the_flow_context() {
    let store = InMemoryEventStore::new();
    let context = CommandContext::caused_by(Uuid::now_v7(), Uuid::now_v7());
    runner(&store).execute_in("a", AccountCommand::Deposit(5), context).await.expect("deposit");
    let recorded = store.read_all(composable::Position::START, 10).await.expect("read");
    assert_eq!(recorded[0].metadata.correlation_id, context.correlation_id);
    assert_eq!(recorded[0].metadata.causation_id, Some(context.causation_id));
}

#[tokio::test]
async fn a_concurrent_writer_is_a_typed_conflict_by_default() {
    let store = racing();
    let runner = AggregateRunner::<Account, _>::new(store.clone(), ());
    let error = runner.execute("a", AccountCommand::Deposit(1)).await.expect_err("conflict");
    match error {
        CommandError::Conflict { stream: s, loaded, actual, attempts } => {
            assert_eq!((s, loaded, actual, attempts), (stream("a"), Version(0), Version(1), 1));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.inner().stream_version(&stream("a")).await.expect("version"), Version(1));
}

#[tokio::test]
async fn a_retry_policy_decides_again_on_the_fresh_state() {
    let store = racing();
    let runner = AggregateRunner::<Account, _>::new(store, ()).with_retry(Backoff::immediate(2));
    // Only possible because the rival deposit of 100 landed first.
    runner.execute("a", AccountCommand::Deposit(1)).await.expect("retried");
    let done = runner.execute("a", AccountCommand::Withdraw(101)).await.expect("withdraw");
    assert_eq!(done.state.balance, 0);
}

#[tokio::test]
async fn snapshots_are_written_every_n_events_and_used_on_load() {
    let store = InMemoryEventStore::new();
    let runner = runner(&store);
    for _ in 0..4 {
        runner.execute("a", AccountCommand::Deposit(1)).await.expect("deposit");
    }
    let snapshot = store.load_snapshot(&stream("a")).await.expect("load").expect("a snapshot");
    assert_eq!((snapshot.version, snapshot.schema_version), (Version(3), 2));
    let loaded = runner.load("a").await.expect("load");
    assert_eq!(loaded.snapshot, Some(Version(3)));
    assert_eq!(loaded.state, Account { balance: 4, movements: 4 });
}

#[tokio::test]
async fn a_snapshot_of_another_schema_is_ignored_not_misread() {
    let store = InMemoryEventStore::new();
    let runner = runner(&store);
    runner.execute("a", AccountCommand::Deposit(7)).await.expect("deposit");
    // A snapshot claiming version 1 with a bogus state, in an older schema.
    let stale = Snapshot {
        stream_id: stream("a"),
        version: Version(1),
        schema_version: 1,
        format: Bincode::FORMAT.into(),
        state: Bincode.encode(&Account { balance: 999, movements: 1 }).expect("encode"),
        taken_at: chrono::Utc::now(),
    };
    store.save_snapshot(stale).await.expect("save");
    let loaded = runner.load("a").await.expect("load");
    assert_eq!(loaded.snapshot, None);
    assert_eq!(loaded.state.balance, 7);
}

#[tokio::test]
async fn an_unreadable_snapshot_falls_back_to_events() {
    let store = InMemoryEventStore::new();
    let runner = runner(&store);
    runner.execute("a", AccountCommand::Deposit(7)).await.expect("deposit");
    let garbage = Snapshot {
        stream_id: stream("a"),
        version: Version(1),
        schema_version: 2,
        format: Bincode::FORMAT.into(),
        state: vec![0xff; 3],
        taken_at: chrono::Utc::now(),
    };
    store.save_snapshot(garbage).await.expect("save");
    assert_eq!(runner.load("a").await.expect("load").state.balance, 7);
}

async fn append_raw(store: &InMemoryEventStore, name: &str, version: u16, payload: Vec<u8>) {
    let event = NewEvent {
        event_id: Uuid::now_v7(),
        name: name.into(),
        version,
        format: Bincode::FORMAT.into(),
        payload,
        metadata: EventMetadata::new_flow(chrono::Utc::now()),
    };
    store.append(&stream("bad"), ExpectedVersion::Any, vec![event]).await.expect("append");
}

#[tokio::test]
async fn bad_stored_events_are_typed_errors_naming_stream_version_and_event() {
    let cases: [(&str, u16, Vec<u8>, &str); 3] = [
        ("account.closed", 1, vec![], "unknown event `account.closed`"),
        ("account.deposited", 9, vec![1], "is newer than this code knows"),
        ("account.deposited", 1, vec![0xff, 0xff, 0xff], "bincode2 could not decode"),
    ];
    for (name, version, payload, expected) in cases {
        let store = InMemoryEventStore::new();
        append_raw(&store, name, version, payload).await;
        let error = runner(&store).load("bad").await.expect_err("must not decode");
        let CommandError::Decode(stored) = &error else {
            panic!("expected a decode error, got {error:?}");
        };
        assert_eq!(
            (&stored.stream, stored.stream_version, stored.name.as_str(), stored.event_version),
            (&stream("bad"), Version(1), name, version)
        );
        let message = error.to_string();
        assert!(message.contains("at `account-bad` version 1"), "{message}");
        assert!(message.contains(expected), "{message}");
    }
}

fn with_command_id() -> CommandContext {
    CommandContext::new_flow().with_command_id(Uuid::now_v7())
}

#[tokio::test]
async fn a_command_with_an_id_appends_events_with_ids_derived_from_it() {
    let store = InMemoryEventStore::new();
    let context = with_command_id();
    let command_id = context.command_id.expect("an id");
    runner(&store).execute_in("a", AccountCommand::Deposit(5), context).await.expect("deposit");
    let recorded = store.read_all(composable::Position::START, 10).await.expect("read");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].event_id, composable::command::event_id(command_id, 0));
}

#[tokio::test]
async fn a_repeated_command_that_would_be_accepted_again_takes_effect_once() {
    let store = InMemoryEventStore::new();
    let runner = runner(&store);
    let context = with_command_id();
    let first = runner.execute_in("a", AccountCommand::Deposit(5), context).await.expect("first");
    assert!(!first.duplicate);
    let again = runner.execute_in("a", AccountCommand::Deposit(5), context).await.expect("again");
    assert!(again.duplicate, "the repeat is answered as a duplicate");
    assert!(again.events.is_empty() && again.append.is_none());
    assert_eq!((again.state.balance, again.version), (5, Version(1)));
    assert_eq!(store.stream_version(&stream("a")).await.expect("version"), Version(1));
}

#[tokio::test]
async fn a_repeated_command_that_would_now_be_refused_is_a_duplicate_not_a_rejection() {
    let store = InMemoryEventStore::new();
    let runner = runner(&store);
    runner.execute("a", AccountCommand::Deposit(10)).await.expect("deposit");
    let context = with_command_id();
    runner.execute_in("a", AccountCommand::Withdraw(10), context).await.expect("withdraw");
    // Decided again, the withdrawal finds no funds; its first event is stored, so it is a repeat.
    let again = runner.execute_in("a", AccountCommand::Withdraw(10), context).await.expect("dup");
    assert!(again.duplicate);
    assert_eq!((again.state.balance, again.version), (0, Version(2)));
    // Another command, with another id, is refused as usual.
    let other = runner.execute_in("a", AccountCommand::Withdraw(10), with_command_id()).await;
    assert!(matches!(other, Err(CommandError::Rejected(AccountError::InsufficientFunds { .. }))));
}

#[tokio::test]
async fn a_refused_command_with_an_id_stays_refused_when_repeated() {
    let store = InMemoryEventStore::new();
    let runner = runner(&store);
    let context = with_command_id();
    for _ in 0..2 {
        let error = runner
            .execute_in("a", AccountCommand::Withdraw(1), context)
            .await
            .expect_err("nothing to withdraw");
        assert!(matches!(error, CommandError::Rejected(_)), "{error:?}");
    }
}

#[tokio::test]
async fn a_command_id_used_on_another_aggregate_is_not_a_duplicate_there() {
    let store = InMemoryEventStore::new();
    let runner = runner(&store);
    let context = with_command_id();
    runner.execute_in("a", AccountCommand::Deposit(1), context).await.expect("deposit on a");
    // The same id for `b`: its derived event ids are taken, which is an error, never a silent
    // "already done" for an aggregate the command never touched.
    let error = runner.execute_in("b", AccountCommand::Deposit(1), context).await.expect_err("id");
    assert!(
        matches!(
            error,
            CommandError::Store(composable::event_store::EventStoreError::DuplicateEventId { .. })
        ),
        "{error:?}"
    );
    assert_eq!(store.stream_version(&stream("b")).await.expect("version"), Version::ZERO);
}

#[tokio::test]
async fn a_command_with_an_id_losing_a_race_to_another_command_is_still_a_conflict() {
    let store = racing();
    let runner = AggregateRunner::<Account, _>::new(store.clone(), ());
    let error = runner
        .execute_in("a", AccountCommand::Deposit(1), with_command_id())
        .await
        .expect_err("the rival deposit came first");
    assert!(matches!(error, CommandError::Conflict { .. }), "{error:?}");
}

// The hot-aggregate cache.

fn cached<S: EventStore + Clone>(store: &S) -> AggregateRunner<Account, S> {
    AggregateRunner::new(store.clone(), ()).with_cache(NonZeroUsize::new(8).expect("8"))
}

/// `store`, counting the reads of a stream.
fn counting_reads(
    store: &InMemoryEventStore,
) -> (HookedStore<InMemoryEventStore>, Arc<AtomicUsize>) {
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let store = HookedStore::new(store.clone()).on_read_stream(move |_, _| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    (store, reads)
}

#[tokio::test]
async fn a_cached_runner_decides_the_next_command_without_reading_the_stream() {
    let (store, reads) = counting_reads(&InMemoryEventStore::new());
    let runner = cached(&store);
    runner.execute("a", AccountCommand::Deposit(10)).await.expect("deposit");
    assert_eq!(reads.load(Ordering::SeqCst), 1, "the first command loads the stream");
    runner.execute("a", AccountCommand::Deposit(5)).await.expect("deposit");
    let done = runner.execute("a", AccountCommand::Withdraw(15)).await.expect("withdraw");
    assert_eq!((done.state.balance, done.version), (0, Version(3)));
    assert_eq!(reads.load(Ordering::SeqCst), 1, "the next ones are decided on the cached state");
    let refused = runner.execute("a", AccountCommand::Withdraw(1)).await;
    assert!(matches!(refused, Err(CommandError::Rejected(_))), "{refused:?}");
    assert_eq!(reads.load(Ordering::SeqCst), 1, "a refusal on a current state reads no events");
    assert_eq!(runner.load("a").await.expect("load").state, done.state);
}

#[tokio::test]
async fn a_cached_runner_keeps_the_least_recently_used_streams_it_has_room_for() {
    let (store, reads) = counting_reads(&InMemoryEventStore::new());
    let runner = AggregateRunner::<Account, _>::new(store.clone(), ())
        .with_cache(NonZeroUsize::new(1).expect("1"));
    for id in ["a", "b", "a"] {
        runner.execute(id, AccountCommand::Deposit(1)).await.expect("deposit");
    }
    assert_eq!(reads.load(Ordering::SeqCst), 3, "room for one: `b` pushed `a` out");
    runner.execute("a", AccountCommand::Deposit(1)).await.expect("deposit");
    assert_eq!(reads.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_cached_state_another_writer_made_stale_is_reloaded_and_never_committed() {
    let store = InMemoryEventStore::new();
    let runner = cached(&store);
    let other = AggregateRunner::<Account, _>::new(store.clone(), ());
    runner.execute("a", AccountCommand::Deposit(10)).await.expect("deposit");
    other.execute("a", AccountCommand::Deposit(100)).await.expect("the other writer's deposit");

    // On the cached state (10) this withdrawal would be refused; on the stream (110) it is not.
    // No retry policy is set: a stale cache is not a conflict the caller sees.
    let done = runner.execute("a", AccountCommand::Withdraw(50)).await.expect("withdraw");
    assert_eq!((done.state.balance, done.version), (60, Version(3)));

    other.execute("a", AccountCommand::Withdraw(60)).await.expect("the other writer's withdrawal");
    // On the cached state (60) this deposit appends at version 3, which the store refuses.
    let done = runner.execute("a", AccountCommand::Deposit(7)).await.expect("deposit");
    assert_eq!((done.state.balance, done.version), (7, Version(5)));
    let events: Vec<_> =
        store.read_stream(&stream("a"), Version::ZERO).try_collect().await.expect("read");
    assert_eq!(events.len(), 5, "every command's event, once");

    other.execute("a", AccountCommand::Deposit(1)).await.expect("the other writer's deposit");
    // Deciding nothing on a stale state is answered after the version is checked, on a load.
    let nothing = runner.execute("a", AccountCommand::Deposit(0)).await.expect("nothing");
    assert_eq!((nothing.state.balance, nothing.version), (8, Version(6)));
}

#[tokio::test]
async fn a_cached_runner_still_reports_a_conflict_its_retry_policy_does_not_absorb() {
    let store = racing();
    let runner = cached(&store);
    let error = runner.execute("a", AccountCommand::Deposit(1)).await.expect_err("conflict");
    assert!(matches!(error, CommandError::Conflict { attempts: 1, .. }), "{error:?}");
    // The conflict did not leave a state behind: the next command sees the rival's deposit.
    let done = runner.execute("a", AccountCommand::Withdraw(100)).await.expect("withdraw");
    assert_eq!(done.state.balance, 0);
}
