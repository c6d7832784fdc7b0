//! The spans the runtime leaves: one per command, with its aggregate, stream, name, ids,
//! attempts and outcome, and a child per step — load, decide, append, snapshot; one per relay
//! batch, per projection batch, per bus delivery, per saga step and per effect a store runs.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use composable::bus::{BusMessage, InMemoryBus, topic_for};
use composable::checkpoint::InMemoryCheckpointStore;
use composable::consumer::{BusConsumer, MessageHandler};
use composable::dispatch::LocalDispatcher;
use composable::projection::{DocumentBatch, DocumentError, InMemoryDocuments, ProjectionRunner};
use composable::relay::Relay;
use composable::saga::{InMemoryTimerStore, SagaRunner};
use composable::{
    AggregateRunner, CommandContext, EventStore, InMemoryEventStore, Position, project, projection,
    service,
};
use support::flows::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as it closed: its name, its parent's, and its fields as text.
#[derive(Debug, Clone)]
struct Closed {
    name: &'static str,
    parent: Option<&'static str>,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Records every span of the test, in the order they close.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Closed>>>);

/// Field `name` of `span` as text, empty when it has none.
fn field(span: &Closed, name: &str) -> String {
    span.fields.get(name).cloned().unwrap_or_default()
}

impl Spans {
    fn closed(&self) -> Vec<Closed> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let fields = span.extensions_mut().remove::<Fields>().unwrap_or_default().0;
        let closed =
            Closed { name: span.name(), parent: span.parent().map(|parent| parent.name()), fields };
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(closed);
    }
}

fn traced() -> (Spans, tracing::subscriber::DefaultGuard) {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    (spans, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn a_command_is_one_span_with_a_child_per_step() {
    let (spans, _guard) = traced();
    let counters = AggregateRunner::<Counter, _>::new(InMemoryEventStore::new(), ());
    counters.execute("c1", Add { amount: 1 }).await.expect("accepted");
    let context = CommandContext::new_flow().with_command_id(uuid::Uuid::now_v7());
    counters.execute_in("c1", Add { amount: 2 }, context).await.expect("accepted");

    let closed = spans.closed();
    let commands: Vec<&Closed> = closed.iter().filter(|span| span.name == "command").collect();
    assert_eq!(commands.len(), 2, "{closed:#?}");
    let second = commands[1];
    for (field, value) in [
        ("aggregate", "counter"),
        ("stream", "counter-c1"),
        ("command", "Add"),
        ("outcome", "accepted"),
        ("attempts", "1"),
        ("correlation_id", &context.correlation_id.to_string()),
        ("causation_id", &context.causation_id.to_string()),
        ("command_id", &context.command_id.map(|id| id.to_string()).unwrap_or_default()),
    ] {
        assert_eq!(
            second.fields.get(field).map(String::as_str),
            Some(value),
            "{field}: {second:#?}"
        );
    }
    assert!(!commands[0].fields.contains_key("command_id"), "none without a command id");

    let steps: Vec<(&str, Option<&str>)> = closed
        .iter()
        .filter(|span| span.name != "command")
        .map(|span| (span.name, span.parent))
        .collect();
    let under = Some("command");
    assert_eq!(
        steps,
        [
            ("load", under),
            ("decide", under),
            ("append", under),
            ("load", under),
            ("decide", under),
            ("append", under),
            // The second event crosses `snapshot_every = 2`.
            ("snapshot", under),
        ]
    );
    let append = closed.iter().find(|span| span.name == "append").expect("an append");
    assert_eq!(append.fields.get("events").map(String::as_str), Some("1"));
}

#[tokio::test]
async fn a_refused_command_says_so_and_appends_nothing() {
    let (spans, _guard) = traced();
    let counters = AggregateRunner::<Counter, _>::new(InMemoryEventStore::new(), ());
    counters.execute("c1", Add { amount: 0 }).await.expect_err("refused");

    let closed = spans.closed();
    let command = closed.iter().find(|span| span.name == "command").expect("a command span");
    assert_eq!(command.fields.get("outcome").map(String::as_str), Some("rejected"));
    let names: Vec<&str> = closed.iter().map(|span| span.name).collect();
    assert_eq!(names, ["load", "decide", "command"]);
}

/// Totals per counter.
struct Totals;

#[projection(name = "totals", store = InMemoryDocuments)]
impl Totals {
    #[project]
    fn added(&self, batch: &mut DocumentBatch, added: &Added) -> Result<(), DocumentError> {
        let total: u32 = batch.get("totals", "all")?.unwrap_or_default();
        batch.put("totals", "all", &(total + added.amount))
    }
}

/// Counts the messages it is handed.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<usize>>);

impl MessageHandler for Received {
    type Error = std::convert::Infallible;

    async fn handle(&mut self, _message: &BusMessage) -> Result<(), Self::Error> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Ok(())
    }
}

#[tokio::test]
async fn relay_batches_projection_batches_and_deliveries_are_spans() {
    let (spans, _guard) = traced();
    let store = InMemoryEventStore::new();
    let counters = AggregateRunner::<Counter, _>::new(store.clone(), ());
    let context = CommandContext::new_flow();
    counters.execute_in("c1", Add { amount: 1 }, context).await.expect("accepted");
    counters.execute_in("c1", Add { amount: 2 }, context).await.expect("accepted");

    let read = InMemoryDocuments::new();
    let mut projection = ProjectionRunner::new(Totals, read.clone()).consumer(store.clone());
    assert_eq!(projection.run_once().await.expect("applied"), 2);
    assert_eq!(read.get::<u32>("totals", "all").expect("read"), Some(3));

    let bus = InMemoryBus::new();
    let received = Received::default();
    let mut consumer = service::spawn(BusConsumer::new(
        "audit",
        bus.clone(),
        [topic_for("counter")],
        received.clone(),
    ));
    let mut relay = Relay::new(store.clone(), bus.clone(), InMemoryCheckpointStore::new());
    assert_eq!(relay.run_once().await.expect("published").published, 2);
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while *received.0.lock().unwrap_or_else(PoisonError::into_inner) < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("both delivered");
    consumer.wait_until(|health| health.caught_up).await;
    consumer.stop().await.expect("stops");

    let closed = spans.closed();
    let batch = closed.iter().find(|span| span.name == "projection.batch").expect("a batch");
    assert_eq!(
        (field(batch, "projection"), field(batch, "version"), field(batch, "events")),
        ("totals".into(), "1".into(), "2".into())
    );
    let relayed = closed.iter().find(|span| span.name == "relay.batch").expect("a relay batch");
    assert_eq!(field(relayed, "events"), "2");
    let deliveries: Vec<&Closed> =
        closed.iter().filter(|span| span.name == "bus.delivery").collect();
    assert_eq!(deliveries.len(), 2, "{closed:#?}");
    for delivery in deliveries {
        assert_eq!(
            (field(delivery, "consumer"), field(delivery, "topic"), field(delivery, "key")),
            ("audit".into(), topic_for("counter"), "counter-c1".into())
        );
        assert_eq!(field(delivery, "correlation_id"), context.correlation_id.to_string());
        assert_eq!(field(delivery, "attempt"), "1");
    }
}

#[tokio::test]
async fn a_saga_step_is_a_span_over_the_commands_it_dispatches() {
    let (spans, _guard) = traced();
    let store = InMemoryEventStore::new();
    let tallies = AggregateRunner::<Tally, _>::new(store.clone(), ());
    let context = CommandContext::new_flow();
    tallies.execute_in("t1", Open { name: "t1".into() }, context).await.expect("opened");
    let counters = Arc::new(AggregateRunner::<Counter, _>::new(store.clone(), ()));
    let dispatcher = LocalDispatcher::new().route(counters);
    let saga =
        SagaRunner::<Bonus, _, _, _>::new(store.clone(), dispatcher, InMemoryTimerStore::new());
    let log = store.read_all(Position::START, 10).await.expect("the log");
    let progress = saga.handle(&log[0]).await.expect("handled").expect("started");
    assert_eq!(progress.dispatched.len(), 1);
    assert!(saga.handle(&log[0]).await.expect("handled").is_none(), "a duplicate");

    let closed = spans.closed();
    let steps: Vec<&Closed> = closed.iter().filter(|span| span.name == "saga.step").collect();
    assert_eq!(steps.len(), 2, "{closed:#?}");
    assert_eq!(
        (field(steps[0], "saga"), field(steps[0], "key"), field(steps[0], "step")),
        ("bonus".into(), "t1".into(), "opened".into())
    );
    assert_eq!(field(steps[0], "correlation_id"), context.correlation_id.to_string());
    assert_eq!(field(steps[0], "status"), "running");
    assert_eq!(field(steps[1], "status"), "ignored");
    let dispatched = closed
        .iter()
        .find(|span| span.name == "command" && field(span, "aggregate") == "counter")
        .expect("the dispatched command");
    assert_eq!(dispatched.parent, Some("saga.step"));
    assert_eq!(field(dispatched, "correlation_id"), context.correlation_id.to_string());
}

#[tokio::test]
async fn an_effect_run_by_a_store_is_a_span_that_says_how_it_ended() {
    let (spans, _guard) = traced();
    let reducer = composable::reducer::reducer_fn(|runs: &mut u32, more: bool, (): &()| {
        *runs += 1;
        if more {
            composable::Effect::run(|send| async move { send.send(false) })
        } else {
            composable::Effect::none()
        }
    });
    let store = composable::Store::new(reducer, 0, ());
    store.send(true).finish().await;
    assert_eq!(store.state(), 2);

    let closed = spans.closed();
    let effects: Vec<&Closed> = closed.iter().filter(|span| span.name == "effect").collect();
    assert_eq!(effects.len(), 1, "{closed:#?}");
    assert_eq!(field(effects[0], "outcome"), "finished");
    assert!(field(effects[0], "store").contains("FnReducer"), "{:?}", effects[0]);
}
