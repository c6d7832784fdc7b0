//! Each metric moves when its cause happens: commands and their outcomes, conflicts and
//! retries, appends and snapshots, effects, log and bus consumers, dead letters, saga inputs,
//! instances and timers, projections. Recorded with `metrics-util`'s debugging recorder, local to
//! the test's thread (each test runs its runtime on it).

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use composable::backoff::Backoff;
use composable::breaker::{BreakerPolicy, BreakerState, CircuitBreaker};
use composable::bus::{BusMessage, EventBus, InMemoryBus, RedeliveryPolicy, topic_for};
use composable::consumer::{BusConsumer, MessageHandler};
use composable::dispatch::LocalDispatcher;
use composable::metrics::{self as names};
use composable::projection::{DocumentBatch, DocumentError, InMemoryDocuments, ProjectionRunner};
use composable::reducer::reducer_fn;
use composable::saga::{InMemoryTimerStore, SagaRunner};
use composable::{
    AggregateRunner, CommandContext, Effect, EventStore, InMemoryEventStore, Position, Store,
    TestClock, project, projection, service,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use support::account::*;
use support::flows::*;
use support::racing::racing;

/// A series: a metric's name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// What the recorder saw, summed over the snapshots taken.
#[derive(Default)]
struct Seen {
    counters: BTreeMap<Series, u64>,
    gauges: BTreeMap<Series, f64>,
    histograms: BTreeMap<Series, Vec<f64>>,
    units: BTreeMap<String, String>,
}

/// Whether `labels` has every pair of `wanted`.
fn matches(labels: &[(String, String)], wanted: &[(&str, &str)]) -> bool {
    wanted.iter().all(|(key, value)| labels.iter().any(|(k, v)| k == key && v == value))
}

impl Seen {
    fn take(&mut self, snapshotter: &Snapshotter) {
        for (key, unit, _, value) in snapshotter.snapshot().into_vec() {
            let (_, key) = key.into_parts();
            let name = key.name().to_owned();
            let mut labels: Vec<(String, String)> =
                key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            labels.sort();
            if let Some(unit) = unit {
                self.units.insert(name.clone(), unit.as_str().to_owned());
            }
            match value {
                DebugValue::Counter(n) => *self.counters.entry((name, labels)).or_default() += n,
                DebugValue::Gauge(g) => {
                    self.gauges.insert((name, labels), g.into_inner());
                }
                DebugValue::Histogram(values) => self
                    .histograms
                    .entry((name, labels))
                    .or_default()
                    .extend(values.into_iter().map(|v| v.into_inner())),
            }
        }
    }

    /// The sum of counter `name` over the series with the `wanted` labels.
    fn counter(&self, name: &str, wanted: &[(&str, &str)]) -> u64 {
        self.counters
            .iter()
            .filter(|((n, labels), _)| n == name && matches(labels, wanted))
            .map(|(_, value)| value)
            .sum()
    }

    /// Gauge `name` of the one series with the `wanted` labels, as last seen.
    fn gauge(&self, name: &str, wanted: &[(&str, &str)]) -> Option<f64> {
        self.gauges
            .iter()
            .find(|((n, labels), _)| n == name && matches(labels, wanted))
            .map(|(_, value)| *value)
    }

    /// The values histogram `name` recorded over the series with the `wanted` labels.
    fn histogram(&self, name: &str, wanted: &[(&str, &str)]) -> Vec<f64> {
        self.histograms
            .iter()
            .filter(|((n, labels), _)| n == name && matches(labels, wanted))
            .flat_map(|(_, values)| values.iter().copied())
            .collect()
    }
}

/// Runs `work` on a current-thread runtime with a recorder of its own; what it recorded.
fn recorded<F: Future<Output = ()>>(work: impl FnOnce(Recording) -> F) -> Seen {
    let recorder = DebuggingRecorder::new();
    let recording = Recording {
        snapshotter: recorder.snapshotter(),
        seen: Arc::new(Mutex::new(Seen::default())),
    };
    let seen = Arc::clone(&recording.seen);
    let snapshotter = recording.snapshotter.clone();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
            .block_on(work(recording));
    });
    let mut seen = Arc::try_unwrap(seen)
        .unwrap_or_else(|_| panic!("the recording outlived its test"))
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    seen.take(&snapshotter);
    seen
}

/// A handle for a test to read what has been recorded so far (gauges as they are now).
struct Recording {
    snapshotter: Snapshotter,
    seen: Arc<Mutex<Seen>>,
}

impl Recording {
    fn now(&self) -> std::sync::MutexGuard<'_, Seen> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.take(&self.snapshotter);
        seen
    }
}

#[test]
fn commands_are_counted_and_timed_by_outcome_with_their_appends_and_snapshots() {
    let seen = recorded(async |_| {
        let counters = AggregateRunner::<Counter, _>::new(InMemoryEventStore::new(), ());
        counters.execute("c1", Add { amount: 1 }).await.expect("accepted");
        counters.execute("c1", Add { amount: 2 }).await.expect("accepted");
        counters.execute("c1", Add { amount: 0 }).await.expect_err("rejected");
        let again = CommandContext::new_flow().with_command_id(uuid::Uuid::now_v7());
        counters.execute_in("c2", Add { amount: 3 }, again).await.expect("accepted");
        counters.execute_in("c2", Add { amount: 3 }, again).await.expect("a duplicate");
    });
    let counter = [("aggregate", "counter")];
    assert_eq!(seen.counter(names::COMMANDS, &[counter[0], ("outcome", "accepted")]), 3);
    assert_eq!(seen.counter(names::COMMANDS, &[counter[0], ("outcome", "rejected")]), 1);
    assert_eq!(seen.counter(names::COMMANDS, &[counter[0], ("outcome", "duplicate")]), 1);
    let durations = seen.histogram(names::COMMAND_DURATION, &counter);
    assert_eq!(durations.len(), 5);
    assert!(durations.iter().all(|seconds| (0.0..10.0).contains(seconds)), "{durations:?}");
    assert_eq!(seen.counter(names::EVENTS_APPENDED, &[("category", "counter")]), 3);
    // Three one-field bincode payloads of a byte each.
    assert_eq!(seen.counter(names::EVENT_BYTES_APPENDED, &[("category", "counter")]), 3);
    // The second event of `c1` crosses `snapshot_every = 2`.
    assert_eq!(seen.counter(names::SNAPSHOTS, &[counter[0], ("result", "written")]), 1);
    assert_eq!(seen.counter(names::COMMAND_CONFLICTS, &counter), 0);
}

#[test]
fn conflicts_are_counted_and_so_are_the_retries_that_absorb_them() {
    let seen = recorded(async |_| {
        let retrying =
            AggregateRunner::<Account, _>::new(racing(), ()).with_retry(Backoff::immediate(2));
        retrying.execute("a", AccountCommand::Deposit(1)).await.expect("retried");
        // Decided again on the rival's deposit of 100.
        retrying.execute("a", AccountCommand::Withdraw(101)).await.expect("withdrawn");
        let once = AggregateRunner::<Account, _>::new(racing(), ());
        once.execute("b", AccountCommand::Deposit(1)).await.expect_err("a conflict");
    });
    let account = [("aggregate", "account")];
    assert_eq!(seen.counter(names::COMMAND_CONFLICTS, &account), 2);
    assert_eq!(seen.counter(names::COMMAND_RETRIES, &account), 1);
    assert_eq!(seen.counter(names::COMMANDS, &[account[0], ("outcome", "accepted")]), 2);
    assert_eq!(seen.counter(names::COMMANDS, &[account[0], ("outcome", "conflict")]), 1);
}

#[derive(Debug, Clone)]
enum Work {
    Run,
    Wait,
    Cancel,
    Done,
}

#[test]
fn effects_are_timed_by_how_they_ended() {
    let seen = recorded(async |_| {
        let reducer = reducer_fn(|done: &mut u32, action: Work, (): &()| match action {
            Work::Run => Effect::run(|send| async move { send.send(Work::Done) }),
            Work::Wait => Effect::run(|_| std::future::pending::<()>()).cancellable(1),
            Work::Cancel => Effect::cancel(1),
            Work::Done => {
                *done += 1;
                Effect::none()
            }
        });
        let store = Store::new(reducer, 0, ());
        store.send(Work::Run).finish().await;
        let waiting = store.send(Work::Wait);
        tokio::task::yield_now().await;
        store.send(Work::Cancel).finish().await;
        waiting.finish().await;
        assert_eq!(store.state(), 1);
    });
    let finished = seen.histogram(names::EFFECT_DURATION, &[("outcome", "finished")]);
    let cancelled = seen.histogram(names::EFFECT_DURATION, &[("outcome", "cancelled")]);
    assert_eq!((finished.len(), cancelled.len()), (1, 1), "{:?}", seen.histograms);
    let store = seen.histograms.keys().next().expect("a series").1.clone();
    assert!(
        store.iter().any(|(key, value)| key == "store" && value.contains("FnReducer")),
        "{store:?}"
    );
}

/// Totals per counter; refuses amounts of 13.
struct Totals;

#[derive(Debug, thiserror::Error)]
enum TotalsError {
    #[error(transparent)]
    Store(#[from] DocumentError),
    #[error("unlucky")]
    Unlucky,
}

#[projection(name = "totals", store = InMemoryDocuments)]
impl Totals {
    #[project]
    fn added(&self, batch: &mut DocumentBatch, added: &Added) -> Result<(), TotalsError> {
        if added.amount == 13 {
            return Err(TotalsError::Unlucky);
        }
        let total: u32 = batch.get("totals", "all")?.unwrap_or_default();
        Ok(batch.put("totals", "all", &(total + added.amount))?)
    }
}

#[test]
fn log_consumers_and_projections_count_what_they_handle_and_how_far_behind_they_are() {
    let seen = recorded(async |recording| {
        let store = InMemoryEventStore::new();
        let counters = AggregateRunner::<Counter, _>::new(store.clone(), ());
        for (stream, amount) in [("c1", 1), ("c2", 13), ("c1", 2)] {
            counters.execute(stream, Add { amount }).await.expect("accepted");
        }
        // Ten seconds after the commits, on the consumer's clock.
        let clock = TestClock::starting_at(chrono::Utc::now() + chrono::Duration::seconds(10));
        let read = InMemoryDocuments::new();
        let runner = ProjectionRunner::new(Totals, read.clone()).attempts(1);
        let mut projection = runner.consumer(store.clone()).with_clock(clock);
        assert_eq!(projection.run_once().await.expect("applied"), 3);
        let consumer = ProjectionRunner::<Totals>::name();
        let named = [("consumer", consumer.as_str())];
        {
            let seen = recording.now();
            let lag = seen.gauge(names::CONSUMER_LAG, &named).expect("a lag");
            assert!((9.0..60.0).contains(&lag), "{lag}");
            let lag = seen.gauge(names::PROJECTION_LAG, &[("projection", "totals")]);
            assert!(lag.is_some_and(|lag| lag >= 0.0), "{lag:?}");
        }
        counters.execute("c1", Add { amount: 4 }).await.expect("accepted");
        assert_eq!(projection.catch_up().await.expect("caught up"), 1);
    });
    let consumer = ProjectionRunner::<Totals>::name();
    let named = [("consumer", consumer.as_str())];
    assert_eq!(seen.counter(names::CONSUMER_EVENTS, &named), 4);
    assert_eq!(seen.gauge(names::CONSUMER_LAG, &named), Some(0.0), "caught up");
    let totals = [("projection", "totals")];
    assert_eq!(seen.counter(names::PROJECTION_EVENTS, &totals), 4);
    assert_eq!(seen.histogram(names::PROJECTION_BATCH_DURATION, &totals).len(), 2);
    assert_eq!(seen.gauge(names::PROJECTION_LAG, &totals), Some(0.0), "caught up");
    // The 13 is parked (one attempt), and nothing after it on its stream.
    assert_eq!(seen.counter(names::PROJECTION_DEAD_LETTERS, &totals), 1);
}

/// Refuses every message it is handed, counting them.
#[derive(Clone, Default)]
struct Refusing(Arc<Mutex<u32>>);

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

impl MessageHandler for Refusing {
    type Error = Refused;

    async fn handle(&mut self, _message: &BusMessage) -> Result<(), Self::Error> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Err(Refused)
    }
}

#[test]
fn bus_deliveries_are_counted_by_outcome_and_the_last_failure_is_a_dead_letter() {
    let topic = topic_for("counter");
    let seen = recorded(async |_| {
        let store = InMemoryEventStore::new();
        let counters = AggregateRunner::<Counter, _>::new(store.clone(), ());
        counters.execute("c1", Add { amount: 1 }).await.expect("accepted");
        let policy = RedeliveryPolicy::default().retry(Backoff::immediate(2));
        let bus = InMemoryBus::new().with_redelivery(policy);
        let refusing = Refusing::default();
        let mut consumer = service::spawn(BusConsumer::new(
            "audit",
            bus.clone(),
            [topic.clone()],
            refusing.clone(),
        ));
        let log = store.read_all(Position::START, 10).await.expect("the log");
        bus.publish(vec![BusMessage::from_event(&log[0])]).await.expect("published");
        tokio::time::timeout(Duration::from_secs(5), async {
            while bus.messages(&format!("{topic}-dlq")).is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("dead-lettered");
        consumer.wait_until(|health| health.caught_up).await;
        consumer.stop().await.expect("stops");
    });
    let delivered = [("consumer", "audit"), ("topic", topic.as_str())];
    assert_eq!(seen.counter(names::BUS_DELIVERIES, &[delivered[0], ("outcome", "refused")]), 2);
    assert_eq!(seen.counter(names::BUS_DELIVERIES, &[delivered[0], ("outcome", "handled")]), 0);
    assert_eq!(seen.counter(names::BUS_DEAD_LETTERS, &[("topic", topic.as_str())]), 1);
    assert!(seen.gauge(names::BUS_CONSUMER_LAG, &delivered).is_some(), "{:?}", seen.gauges);
}

#[test]
fn saga_inputs_instances_and_timers_are_counted() {
    let seen = recorded(async |_| {
        let store = InMemoryEventStore::new();
        let clock = TestClock::new();
        let tallies = AggregateRunner::<Tally, _>::new(store.clone(), ());
        let counters = Arc::new(AggregateRunner::<Counter, _>::new(store.clone(), ()));
        let dispatcher = LocalDispatcher::new().route(counters);
        let saga =
            SagaRunner::<Bonus, _, _, _>::new(store.clone(), dispatcher, InMemoryTimerStore::new())
                .with_clock(clock.clone());
        for name in ["t1", "t2"] {
            tallies.execute(name, Open { name: name.into() }).await.expect("opened");
        }
        tallies.execute("t1", ShutIt { name: "t1".into() }).await.expect("shut");
        let log = store.read_all(Position::START, 100).await.expect("the log");
        for event in log.iter().filter(|event| event.stream_id.category() == "tally") {
            saga.handle(event).await.expect("handled");
        }
        saga.handle(&log[0]).await.expect("a duplicate is ignored");
        // t2 is never shut: its timer fires 30 s late.
        clock.advance(Duration::from_secs(90)).await;
        assert_eq!(saga.fire_due().await.expect("fired").len(), 1);
    });
    let bonus = [("saga", "bonus")];
    assert_eq!(seen.counter(names::SAGA_INSTANCES, &[bonus[0], ("status", "started")]), 2);
    assert_eq!(seen.counter(names::SAGA_INSTANCES, &[bonus[0], ("status", "completed")]), 1);
    assert_eq!(seen.counter(names::SAGA_INSTANCES, &[bonus[0], ("status", "compensated")]), 1);
    let inputs = |input, status| {
        seen.counter(names::SAGA_INPUTS, &[bonus[0], ("input", input), ("status", status)])
    };
    assert_eq!(inputs("event", "running"), 2);
    assert_eq!(inputs("event", "completed"), 1);
    assert_eq!(inputs("event", "ignored"), 1);
    assert_eq!(inputs("timeout", "compensated"), 1);
    assert_eq!(seen.counter(names::SAGA_TIMERS_FIRED, &bonus), 1);
    let lateness = seen.histogram(names::SAGA_TIMER_LATENESS, &bonus);
    assert_eq!(lateness.len(), 1);
    assert!((29.0..31.0).contains(&lateness[0]), "{lateness:?}");
    // The saga's own log is counted too.
    assert!(seen.counter(names::EVENTS_APPENDED, &[("category", "saga.bonus")]) >= 3);
}

#[test]
fn describe_gives_the_recorder_each_unit() {
    let seen = recorded(async |_| {
        names::describe();
        let counters = AggregateRunner::<Counter, _>::new(InMemoryEventStore::new(), ());
        counters.execute("c1", Add { amount: 1 }).await.expect("accepted");
    });
    assert_eq!(seen.units.get(names::COMMAND_DURATION).map(String::as_str), Some("seconds"));
    assert_eq!(seen.units.get(names::EVENT_BYTES_APPENDED).map(String::as_str), Some("bytes"));
    assert_eq!(seen.units.get(names::COMMANDS).map(String::as_str), Some("count"));
}

#[test]
fn a_circuit_breaker_reports_its_state_its_transitions_and_what_it_refused() {
    let seen = recorded(async |recording| {
        let clock = TestClock::new();
        let breaker = CircuitBreaker::new("payments", BreakerPolicy::default().window(2))
            .with_clock(clock.clone());
        let gauge = |recording: &Recording| {
            recording.now().gauge(names::CIRCUIT_BREAKER_STATE, &[("breaker", "payments")])
        };
        assert_eq!(gauge(&recording), Some(0.0), "closed from the start");
        for _ in 0..2 {
            breaker.call(async { Err::<(), _>("down") }).await.expect_err("failed");
        }
        assert_eq!(gauge(&recording), Some(2.0), "open");
        breaker.call(async { Ok::<_, &str>(()) }).await.expect_err("refused");
        clock.advance(Duration::from_secs(30)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(gauge(&recording), Some(1.0), "half-open");
        breaker.call(async { Ok::<_, &str>(()) }).await.expect("the probe");
        assert_eq!(gauge(&recording), Some(0.0), "closed again");
    });
    let payments = ("breaker", "payments");
    for state in ["open", "half_open", "closed"] {
        let entered =
            seen.counter(names::CIRCUIT_BREAKER_TRANSITIONS, &[payments, ("state", state)]);
        assert_eq!(entered, 1, "{state}");
    }
    assert_eq!(seen.counter(names::CIRCUIT_BREAKER_REFUSED, &[payments]), 1);
}

#[test]
fn a_host_with_a_dispatch_breaker_opens_it_while_no_command_service_answers() {
    let seen = recorded(async |recording| {
        let store = InMemoryEventStore::new();
        let tallies = Arc::new(AggregateRunner::<Tally, _>::new(store.clone(), ()));
        let counters = Arc::new(AggregateRunner::<Counter, _>::new(store.clone(), ()));
        // This process runs only the saga: nobody serves the counter's commands.
        let app = composable::host::App::on_bus("shop", store.clone(), InMemoryBus::new())
            .timers(InMemoryTimerStore::new())
            .aggregate(&tallies)
            .aggregate(&counters)
            .saga::<Bonus>()
            .roles(["bonus"])
            .reply_timeout(Duration::from_millis(20))
            .dispatch_breaker(BreakerPolicy::default().window(2))
            .build()
            .expect("wired");
        let running = app.start();
        tallies.execute("t1", Open { name: "t1".into() }).await.expect("opened");
        let opened = || {
            recording.now().counter(
                names::CIRCUIT_BREAKER_TRANSITIONS,
                &[("breaker", "dispatch.bonus"), ("state", "open")],
            )
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            while opened() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the breaker opens: {:#?}", recording.now().counters));
        running.stop().await.expect("stops");
    });
    let refused = seen.counter(names::CIRCUIT_BREAKER_REFUSED, &[("breaker", "dispatch.bonus")]);
    let failed = seen.counter(names::CONSUMER_FAILURES, &[("retried", "true")]);
    assert!(failed >= 2, "the saga's input retried its failed step: {failed}");
    // Refusals come only once it is open; the test may stop before the next retry.
    assert!(refused <= failed, "{refused} > {failed}");
}

#[test]
fn the_host_gives_each_projection_a_breaker_on_its_read_store() {
    let seen = recorded(async |_| {
        let store = InMemoryEventStore::new();
        let counters = Arc::new(AggregateRunner::<Counter, _>::new(store.clone(), ()));
        let running = composable::host::App::in_process("shop", store.clone())
            .aggregate(&counters)
            .projection(Totals, InMemoryDocuments::new())
            .projection_breaker(BreakerPolicy::default())
            .build()
            .expect("wired")
            .start();
        counters.execute("c1", Add { amount: 1 }).await.expect("accepted");
        running.settle().await.expect("settles");
        running.stop().await.expect("stops");
    });
    let breaker = [("breaker", "projection.totals")];
    assert_eq!(seen.gauge(names::CIRCUIT_BREAKER_STATE, &breaker), Some(0.0), "{:?}", seen.gauges);
    assert_eq!(seen.counter(names::PROJECTION_EVENTS, &[("projection", "totals")]), 1);
}
