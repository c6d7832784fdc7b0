//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, behind the `metrics`
//! feature.
//!
//! Every metric the framework records is named here, once; `docs/observability.md` lists them
//! with their units and labels. Without the feature the recording functions are empty and
//! compile away; with it and no recorder installed, each costs the facade's check for one.
//! Install a recorder (a Prometheus exporter, say) at the start of `main`, then call
//! [`describe`] so the exporter knows each metric's unit and help text.
//!
//! Labels are bounded by what the application declares — aggregates, categories, consumers,
//! topics, sagas, projections, stores — never by the data: no stream ids, keys or event ids.
//!
//! Lag is measured in seconds, the same way on every backend: how long ago the last event a
//! consumer handled was committed, and zero once it has caught up with the head.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Commands executed by an `AggregateRunner`, by `aggregate` and `outcome` (`accepted`,
/// `duplicate`, `rejected`, `conflict`, `failed`).
pub const COMMANDS: &str = "composable_commands_total";
/// How long a command took, from its first load to its last append, in seconds; labelled as
/// [`COMMANDS`].
pub const COMMAND_DURATION: &str = "composable_command_duration_seconds";
/// Appends refused because another writer moved the stream first, by `aggregate`.
pub const COMMAND_CONFLICTS: &str = "composable_command_conflicts_total";
/// Commands decided again after a conflict, by `aggregate`.
pub const COMMAND_RETRIES: &str = "composable_command_retries_total";
/// Events appended, by stream `category` (an aggregate's, or a saga's own log).
pub const EVENTS_APPENDED: &str = "composable_events_appended_total";
/// Encoded payload bytes appended, by `category`.
pub const EVENT_BYTES_APPENDED: &str = "composable_event_bytes_appended_total";
/// Snapshots, by `aggregate` and `result` (`written`, `failed`).
pub const SNAPSHOTS: &str = "composable_snapshots_total";
/// How long an effect run by a `Store` took, in seconds, by `store` (the reducer's type) and
/// `outcome` (`finished`, `cancelled`, `panicked`).
pub const EFFECT_DURATION: &str = "composable_effect_duration_seconds";
/// Events handled by a log consumer (the relay, a saga's input, a projection read from the
/// log), by `consumer`: the relay's throughput is this metric for `consumer="relay"`.
pub const CONSUMER_EVENTS: &str = "composable_consumer_events_total";
/// How far behind the head a log consumer is, in seconds, by `consumer`.
pub const CONSUMER_LAG: &str = "composable_consumer_lag_seconds";
/// Failed steps of a log consumer, by `consumer` and `retried` (`true` when it backs off and
/// tries again, `false` when the failure stops it).
pub const CONSUMER_FAILURES: &str = "composable_consumer_failures_total";
/// Deliveries a bus consumer answered, by `consumer` (its group), `topic` and `outcome`
/// (`handled`, `refused`: handed back to the bus, which delivers it again or dead-letters it;
/// `retried`: tried again in place; `stopped`: the failure stopped the consumer).
pub const BUS_DELIVERIES: &str = "composable_bus_deliveries_total";
/// How long ago the last event a bus consumer handled was committed, in seconds, by `consumer`
/// and `topic`; zero while it waits for more.
pub const BUS_CONSUMER_LAG: &str = "composable_bus_consumer_lag_seconds";
/// Messages moved to a dead-letter topic after their last attempt, by the `topic` they failed
/// on.
pub const BUS_DEAD_LETTERS: &str = "composable_bus_dead_letters_total";
/// Saga inputs (events and timeouts), by `saga`, `input` (`event`, `timeout`) and `status`: the
/// status the input left its instance in (`running`, `completed`, `compensated`), `ignored` (a
/// duplicate, a stale timer, an event of no running instance) or `failed`.
pub const SAGA_INPUTS: &str = "composable_saga_inputs_total";
/// Saga instances entering a status, by `saga` and `status` (`started`, `completed`,
/// `compensated`): the instances running are `started` minus the two others.
pub const SAGA_INSTANCES: &str = "composable_saga_instances_total";
/// Saga timers fired, by `saga`.
pub const SAGA_TIMERS_FIRED: &str = "composable_saga_timers_fired_total";
/// How late a saga timer fired after it fell due, in seconds, by `saga`.
pub const SAGA_TIMER_LATENESS: &str = "composable_saga_timer_lateness_seconds";
/// Events a projection handled, by `projection`.
pub const PROJECTION_EVENTS: &str = "composable_projection_events_total";
/// How long a projection took to apply and commit one batch, in seconds, by `projection`.
pub const PROJECTION_BATCH_DURATION: &str = "composable_projection_batch_duration_seconds";
/// How far behind the head a projection is, in seconds, by `projection`.
pub const PROJECTION_LAG: &str = "composable_projection_lag_seconds";
/// Events a projection parked (dead-lettered) with their stream, by `projection`.
pub const PROJECTION_DEAD_LETTERS: &str = "composable_projection_dead_letters_total";
/// A circuit breaker's state, by `breaker`: 0 closed, 1 half-open, 2 open.
pub const CIRCUIT_BREAKER_STATE: &str = "composable_circuit_breaker_state";
/// A circuit breaker entering a state, by `breaker` and `state` (`closed`, `open`, `half_open`).
pub const CIRCUIT_BREAKER_TRANSITIONS: &str = "composable_circuit_breaker_transitions_total";
/// Calls a circuit breaker refused without making them, by `breaker`.
pub const CIRCUIT_BREAKER_REFUSED: &str = "composable_circuit_breaker_refused_total";

/// Tells the installed recorder each metric's unit and description. Call it once, after
/// installing the recorder; without the `metrics` feature it does nothing.
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_counter!(COMMANDS, Unit::Count, "Commands executed, by aggregate and outcome.");
        describe_histogram!(COMMAND_DURATION, Unit::Seconds, "How long a command took.");
        describe_counter!(
            COMMAND_CONFLICTS,
            Unit::Count,
            "Appends refused by a concurrent writer."
        );
        describe_counter!(COMMAND_RETRIES, Unit::Count, "Commands decided again after a conflict.");
        describe_counter!(EVENTS_APPENDED, Unit::Count, "Events appended, by stream category.");
        describe_counter!(EVENT_BYTES_APPENDED, Unit::Bytes, "Payload bytes appended.");
        describe_counter!(SNAPSHOTS, Unit::Count, "Snapshots written or failed.");
        describe_histogram!(EFFECT_DURATION, Unit::Seconds, "How long a store's effect took.");
        describe_counter!(CONSUMER_EVENTS, Unit::Count, "Events handled by a log consumer.");
        describe_gauge!(CONSUMER_LAG, Unit::Seconds, "How far behind the head a consumer is.");
        describe_counter!(CONSUMER_FAILURES, Unit::Count, "Failed steps of a log consumer.");
        describe_counter!(BUS_DELIVERIES, Unit::Count, "Deliveries answered by a bus consumer.");
        describe_gauge!(BUS_CONSUMER_LAG, Unit::Seconds, "How far behind a bus consumer is.");
        describe_counter!(BUS_DEAD_LETTERS, Unit::Count, "Messages moved to a dead-letter topic.");
        describe_counter!(SAGA_INPUTS, Unit::Count, "Events and timeouts a saga handled.");
        describe_counter!(SAGA_INSTANCES, Unit::Count, "Saga instances entering a status.");
        describe_counter!(SAGA_TIMERS_FIRED, Unit::Count, "Saga timers fired.");
        describe_histogram!(SAGA_TIMER_LATENESS, Unit::Seconds, "How late saga timers fired.");
        describe_counter!(PROJECTION_EVENTS, Unit::Count, "Events a projection handled.");
        describe_histogram!(PROJECTION_BATCH_DURATION, Unit::Seconds, "A projection batch.");
        describe_gauge!(PROJECTION_LAG, Unit::Seconds, "How far behind the head a projection is.");
        describe_counter!(PROJECTION_DEAD_LETTERS, Unit::Count, "Events a projection parked.");
        describe_gauge!(CIRCUIT_BREAKER_STATE, "0 closed, 1 half-open, 2 open.");
        describe_counter!(CIRCUIT_BREAKER_TRANSITIONS, Unit::Count, "Breakers entering a state.");
        describe_counter!(CIRCUIT_BREAKER_REFUSED, Unit::Count, "Calls a breaker refused.");
    }
}

/// Measures a duration for a histogram; holds nothing without the feature.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopwatch {
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
}

impl Stopwatch {
    pub(crate) fn start() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            started: std::time::Instant::now(),
        }
    }

    #[cfg(feature = "metrics")]
    fn seconds(self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// How far `recorded_at` is behind `now`, in seconds (zero when the clocks disagree).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn behind(now: DateTime<Utc>, recorded_at: DateTime<Utc>) -> f64 {
    (now - recorded_at).to_std().map_or(0.0, |behind: Duration| behind.as_secs_f64())
}

// The recording functions: one per cause, each the only place its metric is written. Without
// the feature their bodies are empty.

#[cfg(feature = "metrics")]
macro_rules! metric_fns {
    ($($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block)*) => {
        $($(#[$meta])* pub(crate) fn $name($($arg: $ty),*) $body)*
    };
}

#[cfg(not(feature = "metrics"))]
macro_rules! metric_fns {
    ($($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block)*) => {
        $($(#[$meta])* #[inline(always)] pub(crate) fn $name($(_: $ty),*) {})*
    };
}

metric_fns! {
    /// A command finished with `outcome` after `conflicts` conflicts.
    fn command_finished(
        aggregate: &'static str,
        outcome: &'static str,
        conflicts: u32,
        retries: u32,
        took: Stopwatch,
    ) {
        let labels = [("aggregate", aggregate), ("outcome", outcome)];
        metrics::counter!(COMMANDS, &labels).increment(1);
        metrics::histogram!(COMMAND_DURATION, &labels).record(took.seconds());
        if conflicts > 0 {
            metrics::counter!(COMMAND_CONFLICTS, "aggregate" => aggregate)
                .increment(u64::from(conflicts));
        }
        if retries > 0 {
            metrics::counter!(COMMAND_RETRIES, "aggregate" => aggregate)
                .increment(u64::from(retries));
        }
    }

    /// `events` events of `bytes` payload bytes were appended to a stream of `category`.
    fn appended(category: &str, events: usize, bytes: usize) {
        let category = category.to_owned();
        metrics::counter!(EVENTS_APPENDED, "category" => category.clone()).increment(events as u64);
        metrics::counter!(EVENT_BYTES_APPENDED, "category" => category).increment(bytes as u64);
    }

    /// A snapshot of `aggregate` was written (or failed to be).
    fn snapshot(aggregate: &'static str, written: bool) {
        let result = if written { "written" } else { "failed" };
        metrics::counter!(SNAPSHOTS, "aggregate" => aggregate, "result" => result).increment(1);
    }

    /// An effect of the store `store` ended with `outcome`.
    fn effect_finished(store: &'static str, outcome: &'static str, took: Stopwatch) {
        metrics::histogram!(EFFECT_DURATION, "store" => store, "outcome" => outcome)
            .record(took.seconds());
    }

    /// A log consumer handled `events`, the last of them recorded at `last_recorded_at`.
    fn consumer_handled(consumer: &str, events: usize, last_recorded_at: DateTime<Utc>, now: DateTime<Utc>) {
        let consumer = consumer.to_owned();
        metrics::counter!(CONSUMER_EVENTS, "consumer" => consumer.clone()).increment(events as u64);
        metrics::gauge!(CONSUMER_LAG, "consumer" => consumer).set(behind(now, last_recorded_at));
    }

    /// A log consumer reached the head.
    fn consumer_caught_up(consumer: &str) {
        metrics::gauge!(CONSUMER_LAG, "consumer" => consumer.to_owned()).set(0.0);
    }

    /// A step of a log consumer failed; `retried` when it tries again.
    fn consumer_failed(consumer: &str, retried: bool) {
        let retried = if retried { "true" } else { "false" };
        metrics::counter!(CONSUMER_FAILURES, "consumer" => consumer.to_owned(), "retried" => retried)
            .increment(1);
    }

    /// A bus consumer answered a delivery of `message` with `outcome`; its lag is how long ago
    /// the event was committed, when the message says.
    fn delivery_answered(
        consumer: &str,
        message: &crate::bus::BusMessage,
        outcome: &'static str,
        clock: &dyn crate::clock::Clock,
    ) {
        let (consumer, topic) = (consumer.to_owned(), message.topic.clone());
        let recorded_at = message.recorded_at().ok();
        let now = clock.now();
        metrics::counter!(
            BUS_DELIVERIES,
            "consumer" => consumer.clone(),
            "topic" => topic.clone(),
            "outcome" => outcome
        )
        .increment(1);
        if let Some(recorded_at) = recorded_at {
            metrics::gauge!(BUS_CONSUMER_LAG, "consumer" => consumer, "topic" => topic)
                .set(behind(now, recorded_at));
        }
    }

    /// A bus consumer has nothing more to handle for now.
    fn bus_consumer_idle(consumer: &str, topics: &[String]) {
        for topic in topics {
            metrics::gauge!(BUS_CONSUMER_LAG, "consumer" => consumer.to_owned(), "topic" => topic.clone())
                .set(0.0);
        }
    }

    /// A message of `topic` was dead-lettered.
    fn dead_lettered(topic: &str) {
        metrics::counter!(BUS_DEAD_LETTERS, "topic" => topic.to_owned()).increment(1);
    }

    /// A saga handled an input (`event` or `timeout`) with `status`; `started` when it started
    /// the instance, `finished` with the status it finished in.
    fn saga_input(
        saga: &'static str,
        input: &'static str,
        status: &'static str,
        started: bool,
        finished: Option<&'static str>,
    ) {
        metrics::counter!(SAGA_INPUTS, "saga" => saga, "input" => input, "status" => status)
            .increment(1);
        if started {
            metrics::counter!(SAGA_INSTANCES, "saga" => saga, "status" => "started").increment(1);
        }
        if let Some(finished) = finished {
            metrics::counter!(SAGA_INSTANCES, "saga" => saga, "status" => finished).increment(1);
        }
    }

    /// A timer of `saga`, due at `due_at`, fired at `now`.
    fn timer_fired(saga: &'static str, due_at: DateTime<Utc>, now: DateTime<Utc>) {
        metrics::counter!(SAGA_TIMERS_FIRED, "saga" => saga).increment(1);
        metrics::histogram!(SAGA_TIMER_LATENESS, "saga" => saga).record(behind(now, due_at));
    }

    /// A projection applied and committed a batch of `events`, the last recorded at
    /// `last_recorded_at`.
    fn projection_batch(
        projection: &str,
        events: usize,
        last_recorded_at: DateTime<Utc>,
        now: DateTime<Utc>,
        took: Stopwatch,
    ) {
        let projection = projection.to_owned();
        metrics::counter!(PROJECTION_EVENTS, "projection" => projection.clone())
            .increment(events as u64);
        metrics::histogram!(PROJECTION_BATCH_DURATION, "projection" => projection.clone())
            .record(took.seconds());
        metrics::gauge!(PROJECTION_LAG, "projection" => projection).set(behind(now, last_recorded_at));
    }

    /// A projection reached the head.
    fn projection_caught_up(projection: &str) {
        metrics::gauge!(PROJECTION_LAG, "projection" => projection.to_owned()).set(0.0);
    }

    /// Breaker `breaker` is in `state`, the gauge's `value`: created so, or `entered` it.
    fn breaker_state(breaker: &str, state: &'static str, value: f64, entered: bool) {
        let breaker = breaker.to_owned();
        metrics::gauge!(CIRCUIT_BREAKER_STATE, "breaker" => breaker.clone()).set(value);
        if entered {
            metrics::counter!(CIRCUIT_BREAKER_TRANSITIONS, "breaker" => breaker, "state" => state)
                .increment(1);
        }
    }

    /// Breaker `breaker` refused a call.
    fn breaker_refused(breaker: &str) {
        metrics::counter!(CIRCUIT_BREAKER_REFUSED, "breaker" => breaker.to_owned()).increment(1);
    }

    /// A projection parked `events` events.
    fn projection_parked(projection: &str, events: usize) {
        metrics::counter!(PROJECTION_DEAD_LETTERS, "projection" => projection.to_owned())
            .increment(events as u64);
    }
}
