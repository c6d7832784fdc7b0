//! Projections fed from the bus, on the in-memory bus and stores: they catch up from the log,
//! then follow the topics; a delivery made twice, streams that interleave in any order and a
//! restart apply each event once; a failing handler is retried by the consumer rather than
//! dead-lettered by the bus, then parked with its stream; a message that is not an event goes
//! to the bus's dead letters; the host wires one from the aggregates that emit its events.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use composable::backoff::Backoff;
use composable::bus::{BusMessage, EventBus, InMemoryBus, RedeliveryPolicy};
use composable::host::App;
use composable::projection::{
    DocumentBatch, DocumentError, InMemoryDocuments, ProjectionRunner, ProjectionState, ReadStore,
};
use composable::service::{self, ServiceHandle};
use composable::{
    AggregateRunner, EventStore, InMemoryEventStore, Position, RecordedEvent, aggregate, apply,
    command, event, project, projection,
};
use serde::{Deserialize, Serialize};

#[event(name = "account.deposited", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    pub cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposit {
    pub cents: u64,
}

#[derive(Debug, Default)]
pub struct Account;

#[aggregate(stream = "account")]
impl Account {
    #[command]
    fn deposit(&self, command: Deposit) -> Deposited {
        Deposited { cents: command.cents }
    }

    #[apply]
    fn deposited(&mut self, _event: &Deposited) {}
}

#[derive(Debug, thiserror::Error)]
enum TotalsError {
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("the ledger is busy")]
    Busy,
    #[error("13 cents are refused")]
    Unlucky,
}

/// Cents deposited per account and in all — `all` sums the events of every stream, which a
/// guard by position per key would get wrong once streams interleave. The first `flaky`
/// deposits fail once each; a deposit of 13 cents always fails.
struct Totals {
    flaky: Arc<AtomicUsize>,
}

impl Totals {
    fn new() -> Self {
        Self { flaky: Arc::new(AtomicUsize::new(0)) }
    }
}

#[projection(name = "totals", store = InMemoryDocuments)]
impl Totals {
    #[project]
    fn deposited(
        &self,
        batch: &mut DocumentBatch,
        deposited: &Deposited,
        envelope: &RecordedEvent,
    ) -> Result<(), TotalsError> {
        if deposited.cents == 13 {
            return Err(TotalsError::Unlucky);
        }
        if self.flaky.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            return Err(TotalsError::Busy);
        }
        let account = envelope.stream_id.as_str();
        let mine: u64 = batch.get("totals", account)?.unwrap_or(0);
        batch.put("totals", account, &(mine + deposited.cents))?;
        let all: u64 = batch.get("totals", "all")?.unwrap_or(0);
        batch.put("totals", "all", &(all + deposited.cents))?;
        Ok(())
    }
}

const WAIT: Duration = Duration::from_secs(5);
const TOPIC: &str = "account-events";

type Accounts = Arc<AggregateRunner<Account, InMemoryEventStore>>;

/// Deposits `cents` on `account`, and the event it recorded.
async fn deposit(
    accounts: &Accounts,
    store: &InMemoryEventStore,
    account: &str,
    cents: u64,
) -> RecordedEvent {
    let done = accounts.execute(account, Deposit { cents }).await.expect("the deposit is taken");
    let token = done.token.expect("it appended");
    let events = store.read_all(Position::START, usize::MAX).await.expect("read the log");
    events.into_iter().find(|event| event.position == token.position()).expect("in the log")
}

async fn publish(bus: &InMemoryBus, events: &[&RecordedEvent]) {
    let messages = events.iter().map(|event| BusMessage::from_event(event)).collect();
    bus.publish(messages).await.expect("the in-memory bus takes it");
}

fn total(read: &InMemoryDocuments, key: &str) -> u64 {
    read.get("totals", key).expect("a valid collection").unwrap_or(0)
}

/// Waits until the totals of `expected` are reached, then checks that they are exactly that.
async fn totals_become(read: &InMemoryDocuments, expected: &[(&str, u64)]) {
    let reached = tokio::time::timeout(WAIT, async {
        while expected.iter().any(|(key, cents)| total(read, key) < *cents) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let found: Vec<(&str, u64)> =
        expected.iter().map(|(key, _)| (*key, total(read, key))).collect();
    assert!(reached.is_ok(), "timed out: {found:?}, expected {expected:?}");
    assert_eq!(found, expected, "each event applied once");
}

fn spawn(
    projection: Totals,
    read: &InMemoryDocuments,
    store: &InMemoryEventStore,
    bus: &InMemoryBus,
) -> ServiceHandle {
    let runner = ProjectionRunner::new(projection, read.clone()).attempts(4);
    service::spawn(
        runner
            .from_bus(store.clone(), bus.clone(), [TOPIC])
            .backoff(Backoff::constant(Duration::from_millis(1)).forever()),
    )
}

#[tokio::test]
async fn deliveries_made_twice_in_any_order_across_streams_and_a_restart_apply_each_event_once() {
    let store = InMemoryEventStore::new();
    let bus = InMemoryBus::new();
    let read = InMemoryDocuments::new();
    let accounts: Accounts = Arc::new(AggregateRunner::new(store.clone(), ()));

    // History, in the log before the projection starts: caught up from the log.
    let a1 = deposit(&accounts, &store, "a", 100).await;
    let a2 = deposit(&accounts, &store, "a", 20).await;
    let b1 = deposit(&accounts, &store, "b", 3).await;
    let mut handle = spawn(Totals::new(), &read, &store, &bus);
    totals_become(&read, &[("account-a", 120), ("account-b", 3), ("all", 123)]).await;
    // Caught up with the log: what is appended from now on comes from the bus only.
    assert!(handle.wait_until(|health| health.caught_up).await.caught_up);

    // The relay's deliveries of the history come too, and change nothing; then new events,
    // streams interleaved in another order than the log's, with some delivered twice. The last
    // event of each stream comes after its duplicates (one stream, one order), so once it is
    // applied every duplicate was seen.
    let a3 = deposit(&accounts, &store, "a", 1000).await;
    let b2 = deposit(&accounts, &store, "b", 40).await;
    let c1 = deposit(&accounts, &store, "c", 5).await;
    let b3 = deposit(&accounts, &store, "b", 500).await;
    let a4 = deposit(&accounts, &store, "a", 6000).await;
    publish(&bus, &[&a1, &b1, &a2, &c1, &b2, &b1, &a3, &b2, &a3, &c1, &b3, &a4]).await;
    totals_become(
        &read,
        &[("account-a", 7120), ("account-b", 543), ("account-c", 5), ("all", 7668)],
    )
    .await;
    handle.stop().await.expect("it stops cleanly");

    // Stopped: events appended meanwhile are in the log (caught up from there on restart) and
    // on the bus (delivered again after it): each applied once.
    let c2 = deposit(&accounts, &store, "c", 70_000).await;
    let d1 = deposit(&accounts, &store, "d", 800_000).await;
    publish(&bus, &[&d1, &c2, &a4]).await;
    let mut handle = spawn(Totals::new(), &read, &store, &bus);
    totals_become(&read, &[("account-c", 70_005), ("account-d", 800_000), ("all", 877_668)]).await;
    assert!(handle.wait_until(|health| health.caught_up).await.caught_up);
    let d2 = deposit(&accounts, &store, "d", 9_000_000).await;
    publish(&bus, &[&d1, &d2]).await;
    totals_become(&read, &[("account-d", 9_800_000), ("all", 9_877_668)]).await;
    handle.stop().await.expect("it stops cleanly");
}

#[tokio::test]
async fn a_failing_event_is_retried_by_the_consumer_then_parked_and_a_message_that_is_no_event_is_dead_lettered()
 {
    let store = InMemoryEventStore::new();
    // The bus would dead-letter a refused delivery at once: only the consumer's own retries
    // keep the projection's events.
    let bus = InMemoryBus::new()
        .with_redelivery(RedeliveryPolicy::default().retry(Backoff::immediate(1)));
    let read = InMemoryDocuments::new();
    let accounts: Accounts = Arc::new(AggregateRunner::new(store.clone(), ()));
    let handle = spawn(Totals::new(), &read, &store, &bus);
    let mut health = handle.watch_health();
    health.wait_for(|health| health.caught_up).await.expect("caught up with the empty log");

    let a1 = deposit(&accounts, &store, "a", 13).await;
    let a2 = deposit(&accounts, &store, "a", 7).await;
    let b1 = deposit(&accounts, &store, "b", 2).await;
    bus.publish(vec![BusMessage::new(TOPIC, "account-x", b"not an event".to_vec())])
        .await
        .expect("published");
    publish(&bus, &[&a1, &a2, &b1]).await;
    totals_become(&read, &[("account-b", 2), ("all", 2)]).await;

    // The unlucky deposit failed its 4 attempts and was parked, and the next event of its
    // stream behind it; the other stream went on.
    let letters = read.dead_letters("projection.totals").await.expect("read the dead letters");
    let parked: Vec<u64> = letters.iter().map(|letter| letter.event.stream_version.0).collect();
    assert_eq!(parked, [1, 2], "{letters:?}");
    assert!(letters[0].reason.contains("13 cents"), "{}", letters[0].reason);
    assert_eq!(total(&read, "account-a"), 0);

    // Only the message that is not an event is among the bus's dead letters.
    let dead = bus.messages("account-events-dlq");
    assert_eq!(dead.iter().map(|message| message.key.as_str()).collect::<Vec<_>>(), ["account-x"]);
    handle.stop().await.expect("it stops cleanly");
}

#[tokio::test]
async fn a_handler_that_fails_for_a_while_is_retried_until_it_succeeds_not_dead_lettered() {
    let store = InMemoryEventStore::new();
    let bus = InMemoryBus::new()
        .with_redelivery(RedeliveryPolicy::default().retry(Backoff::immediate(1)));
    let read = InMemoryDocuments::new();
    let accounts: Accounts = Arc::new(AggregateRunner::new(store.clone(), ()));
    let projection = Totals::new();
    let flaky = Arc::clone(&projection.flaky);
    let handle = spawn(projection, &read, &store, &bus);
    let mut health = handle.watch_health();
    health.wait_for(|health| health.caught_up).await.expect("caught up with the empty log");

    // Three failures in a row, fewer than the runner's 4 attempts: applied on the fourth.
    flaky.store(3, Ordering::SeqCst);
    let a1 = deposit(&accounts, &store, "a", 9).await;
    publish(&bus, &[&a1]).await;
    totals_become(&read, &[("account-a", 9), ("all", 9)]).await;
    assert_eq!(flaky.load(Ordering::SeqCst), 0, "it failed three times first");
    assert!(bus.messages("account-events-dlq").is_empty(), "nothing dead-lettered by the bus");
    assert!(read.dead_letters("projection.totals").await.expect("read").is_empty());
    handle.stop().await.expect("it stops cleanly");
}

#[tokio::test]
async fn the_host_feeds_a_projection_from_the_topics_of_the_aggregates_that_emit_its_events() {
    let store = InMemoryEventStore::new();
    let bus = InMemoryBus::new();
    let read = InMemoryDocuments::new();
    let accounts: Accounts = Arc::new(AggregateRunner::new(store.clone(), ()));
    deposit(&accounts, &store, "a", 1).await;
    let running = App::on_bus("bank", store.clone(), bus.clone())
        .aggregate(&accounts)
        .projection_from_bus(Totals::new(), read.clone())
        .build()
        .expect("the wiring is complete")
        .start();
    deposit(&accounts, &store, "a", 20).await;
    deposit(&accounts, &store, "b", 300).await;
    // The relay publishes them; the projection caught up with the first from the log, and
    // takes the rest from the bus.
    totals_become(&read, &[("account-a", 21), ("account-b", 300), ("all", 321)]).await;

    let statuses = running.projections().await.expect("the statuses");
    let status = statuses.iter().find(|status| status.name == "projection.totals").expect("it");
    assert_eq!(status.state, ProjectionState::Running, "{status:?}");
    assert_eq!(status.serving, Some(1));
    running.stop().await.expect("it stops cleanly");
}
