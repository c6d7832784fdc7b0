//! One flow is one trace, across the log and the bus: with an OpenTelemetry layer installed, a
//! saga's step is the child of the command that appended its event, the command it sends over
//! the bus is handled under a delivery that is the child of that step, and every event keeps
//! the span that appended it.

mod support;

use std::sync::Arc;
use std::time::Duration;

use composable::bus::InMemoryBus;
use composable::host::App;
use composable::saga::InMemoryTimerStore;
use composable::trace::TraceContext;
use composable::{AggregateRunner, EventStore, InMemoryEventStore, Position};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use support::flows::*;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// Runs `flow` under a subscriber that records spans through OpenTelemetry, and returns every
/// span it exported.
async fn exported(flow: impl AsyncFnOnce()) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("composable-tests")));
    {
        // The test runs on one thread, so every task the host spawns records here too.
        let _default = tracing::subscriber::set_default(subscriber);
        flow().await;
    }
    provider.force_flush().expect("flushed");
    exporter.get_finished_spans().expect("exported spans")
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|span| span.name == name).collect()
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key.as_str() == key)
        .map(|attribute| attribute.value.as_str().into_owned())
}

/// The one span called `name` whose attribute `key` is `value`.
fn the<'a>(spans: &'a [SpanData], name: &str, key: &str, value: &str) -> &'a SpanData {
    let found: Vec<_> = named(spans, name)
        .into_iter()
        .filter(|span| attribute(span, key).as_deref() == Some(value))
        .collect();
    assert_eq!(found.len(), 1, "one `{name}` span with {key}={value}: {spans:#?}");
    found[0]
}

fn context_of(span: &SpanData) -> (TraceId, SpanId) {
    (span.span_context.trace_id(), span.span_context.span_id())
}

fn ids(context: TraceContext) -> (TraceId, SpanId) {
    (TraceId::from_bytes(context.trace_id()), SpanId::from_bytes(context.span_id()))
}

#[tokio::test]
async fn a_flow_across_the_log_and_the_bus_is_one_trace() {
    let store = InMemoryEventStore::new();
    let spans = exported(async || {
        let tallies = Arc::new(AggregateRunner::<Tally, _>::new(store.clone(), ()));
        let counters = Arc::new(AggregateRunner::<Counter, _>::new(store.clone(), ()));
        let app = App::on_bus("shop", store.clone(), InMemoryBus::new())
            .timers(InMemoryTimerStore::new())
            .aggregate(&tallies)
            .aggregate(&counters)
            .saga::<Bonus>()
            .reply_timeout(Duration::from_secs(5))
            .build()
            .expect("wired");
        let running = app.start();
        tallies
            .execute("t1", Open { name: "t1".into() })
            .instrument(tracing::info_span!("request"))
            .await
            .expect("opened");
        tokio::time::timeout(Duration::from_secs(10), async {
            while counters.load("t1").await.expect("loads").version.get() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the saga's command reaches the counter");
        running.settle().await.expect("settles");
        running.stop().await.expect("stops");
    })
    .await;

    let request = named(&spans, "request")[0];
    let (trace, request_id) = context_of(request);
    let opening = the(&spans, "command", "aggregate", "tally");
    assert_eq!(opening.parent_span_id, request_id);
    let step = the(&spans, "saga.step", "step", "opened");
    assert_eq!(context_of(step).0, trace, "the step is in the request's trace");
    assert_eq!(step.parent_span_id, context_of(opening).1, "the step follows the command");
    let adding = the(&spans, "command", "aggregate", "counter");
    let delivery = named(&spans, "bus.delivery")
        .into_iter()
        .find(|span| span.span_context.span_id() == adding.parent_span_id)
        .expect("the counter's command runs under a bus delivery");
    assert_eq!(context_of(delivery).0, trace, "the command service works in the same trace");
    assert_eq!(delivery.parent_span_id, context_of(step).1, "the delivery follows the step");

    // Every event the flow appended names the span that appended it.
    let log = store.read_all(Position::START, 100).await.expect("reads");
    let trace_of = |category: &str| {
        let event = log
            .iter()
            .find(|event| event.stream_id.category() == category)
            .unwrap_or_else(|| panic!("a {category} event"));
        ids(event.metadata.trace.unwrap_or_else(|| panic!("the {category} event has a trace")))
    };
    assert_eq!(trace_of("tally"), context_of(opening));
    assert_eq!(trace_of("counter"), context_of(adding));
    assert_eq!(trace_of(&composable::saga::category("bonus")), context_of(step));
}

#[tokio::test]
async fn without_an_opentelemetry_layer_nothing_is_written() {
    let store = InMemoryEventStore::new();
    let tallies = AggregateRunner::<Tally, _>::new(store.clone(), ());
    tallies.execute("t1", Open { name: "t1".into() }).await.expect("opened");
    let log = store.read_all(Position::START, 10).await.expect("reads");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].metadata.trace, None);
    assert_eq!(TraceContext::current(), None);
}
