//! A saga's dispatch retried with a back-off: a command whose target is unreachable for a
//! while is sent again, with the same id, after each wait on the runner's clock; once the
//! attempts are spent the step fails with the last error, which the instance records before it
//! compensates. Without a policy the failure goes back to the input, which handles the event
//! again later.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use composable::backoff::Backoff;
use composable::dispatch::{Dispatch, DispatchError, Dispatcher, LocalDispatcher};
use composable::saga::{InMemoryTimerStore, SagaError, SagaStatus};
use composable::{
    AggregateRunner, CommandContext, EventStore, InMemoryEventStore, Position, SagaRunner,
    TestClock,
};
use support::flows::*;

/// The counters' runner behind a link that drops the first `failures` commands.
#[derive(Clone)]
struct Unreliable {
    inner: Arc<LocalDispatcher>,
    failures: u32,
    calls: Arc<AtomicU32>,
}

impl Dispatcher for Unreliable {
    async fn dispatch(
        &self,
        dispatch: Dispatch,
        context: CommandContext,
    ) -> Result<(), DispatchError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call <= self.failures {
            return Err(DispatchError::Failed {
                aggregate: "counter",
                id: dispatch.id().to_owned(),
                source: format!("the counter service is unreachable (call {call})").into(),
            });
        }
        self.inner.dispatch(dispatch, context).await
    }
}

struct Shop {
    store: InMemoryEventStore,
    tallies: AggregateRunner<Tally, InMemoryEventStore>,
    counters: Arc<AggregateRunner<Counter, InMemoryEventStore>>,
    link: Unreliable,
    clock: TestClock,
}

fn shop(failures: u32) -> Shop {
    let store = InMemoryEventStore::new();
    let counters = Arc::new(AggregateRunner::<Counter, _>::new(store.clone(), ()));
    let inner = Arc::new(LocalDispatcher::new().route(Arc::clone(&counters)));
    Shop {
        tallies: AggregateRunner::new(store.clone(), ()),
        store,
        counters,
        link: Unreliable { inner, failures, calls: Arc::new(AtomicU32::new(0)) },
        clock: TestClock::new(),
    }
}

impl Shop {
    fn saga(&self) -> SagaRunner<Bonus, InMemoryEventStore, Unreliable, InMemoryTimerStore> {
        SagaRunner::new(self.store.clone(), self.link.clone(), InMemoryTimerStore::new())
            .with_clock(self.clock.clone())
    }

    /// Opens tally `name` and hands its event to `saga`, stepping the clock through the waits.
    async fn open(
        &self,
        saga: &SagaRunner<Bonus, InMemoryEventStore, Unreliable, InMemoryTimerStore>,
        name: &str,
    ) -> Result<Option<composable::saga::Progress>, SagaError> {
        self.tallies.execute(name, Open { name: name.into() }).await.expect("opened");
        let log = self.store.read_all(Position::START, 100).await.expect("reads");
        let opened = log.iter().rev().find(|event| event.name == "tally.opened").expect("opened");
        let clock = self.clock.clone();
        let ((), handled) = tokio::join!(
            async move {
                for wait in [1, 2, 4, 8, 16] {
                    tokio::task::yield_now().await;
                    clock.advance(Duration::from_secs(wait)).await;
                }
            },
            saga.handle(opened),
        );
        handled
    }

    async fn bonus(&self, name: &str) -> u64 {
        self.counters.load(name).await.expect("loads").version.get()
    }
}

#[tokio::test]
async fn a_dispatch_that_fails_for_a_while_is_sent_again_after_each_wait() {
    let shop = shop(2);
    let saga = shop.saga().with_dispatch_retry(Backoff::STANDARD);
    let progress = shop.open(&saga, "t1").await.expect("handled").expect("a step");
    assert_eq!(progress.failure, None);
    assert_eq!(progress.status, SagaStatus::Running);
    assert_eq!(shop.link.calls.load(Ordering::SeqCst), 3, "two failures, then through");
    assert_eq!(shop.bonus("t1").await, 1, "the bonus was added once");
}

#[tokio::test]
async fn a_dispatch_out_of_attempts_fails_the_step_which_is_recorded_and_compensated() {
    let shop = shop(u32::MAX);
    let saga = shop.saga().with_dispatch_retry(Backoff::STANDARD);
    let progress = shop.open(&saga, "t1").await.expect("handled").expect("a step");
    assert_eq!(shop.link.calls.load(Ordering::SeqCst), 5, "five attempts");
    let failure = progress.failure.expect("the step failed");
    assert!(failure.contains("the counter service is unreachable (call 5)"), "{failure}");
    assert_eq!(progress.status, SagaStatus::Compensated);
    // The instance keeps the failure: it is finished, and the event is not handled again.
    let summary = saga.load("t1").await.expect("loads").expect("an instance");
    assert_eq!(summary.status, SagaStatus::Compensated);
    assert_eq!(shop.bonus("t1").await, 0);
    let again = shop.open(&saga, "t1").await;
    assert!(matches!(again, Ok(None)), "a finished instance ignores its events: {again:?}");
}

#[tokio::test]
async fn without_a_policy_the_failure_goes_back_to_the_input() {
    let shop = shop(1);
    let saga = shop.saga();
    let failed = shop.open(&saga, "t1").await;
    assert!(matches!(failed, Err(SagaError::Dispatch(DispatchError::Failed { .. }))), "{failed:?}");
    assert!(saga.load("t1").await.expect("loads").is_none(), "nothing recorded");
    // Handled again (as the input would), it goes through.
    let log = shop.store.read_all(Position::START, 100).await.expect("reads");
    let progress = saga.handle(&log[0]).await.expect("handled").expect("a step");
    assert_eq!(progress.failure, None);
    assert_eq!(shop.bonus("t1").await, 1);
}

#[tokio::test]
async fn the_host_gives_every_saga_its_dispatch_retry() {
    use composable::bus::InMemoryBus;
    use composable::host::App;

    let store = InMemoryEventStore::new();
    let tallies = Arc::new(AggregateRunner::<Tally, _>::new(store.clone(), ()));
    let counters = Arc::new(AggregateRunner::<Counter, _>::new(store.clone(), ()));
    // This process runs only the saga: nobody answers the counter's commands.
    let app = App::on_bus("shop", store.clone(), InMemoryBus::new())
        .timers(InMemoryTimerStore::new())
        .aggregate(&tallies)
        .aggregate(&counters)
        .saga::<Bonus>()
        .roles(["bonus"])
        .reply_timeout(Duration::from_millis(20))
        .dispatch_retry(Backoff::constant(Duration::from_millis(5)).attempts(3))
        .build()
        .expect("wired");
    let running = app.start();
    tallies.execute("t1", Open { name: "t1".into() }).await.expect("opened");
    // Another runner of the same saga reads the instance the host's runner records.
    let reader = SagaRunner::<Bonus, _, _, _>::new(
        store.clone(),
        LocalDispatcher::new(),
        InMemoryTimerStore::new(),
    );
    let summary = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(summary) = reader.load("t1").await.expect("loads")
                && summary.status == SagaStatus::Compensated
            {
                return summary;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the step fails after three unanswered attempts and the instance compensates");
    assert_eq!(summary.completed, ["opened"]);
    running.stop().await.expect("stops");
}
