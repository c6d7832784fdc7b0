//! One checkout is one trace across processes: the test places orders as the front end, one
//! `checkout-service` process runs the relay and the command service, another the saga, and
//! all three export their spans with OTLP (HTTP, JSON) to a collector the test runs. Each order's
//! trace holds the saga's steps in one process and the commands they sent, over Kafka, in the
//! other, as one tree; the processes flush their spans when they stop on SIGTERM.
//!
//! Needs `DATABASE_URL` and `KAFKA_BROKERS` (`scripts/test` starts a private PostgreSQL and a
//! tansu broker and sets both).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use checkout_saga::telemetry::{OtlpConfig, Telemetry};
use checkout_saga::{Aggregates, DECLINED_CARD, OrderStatus, PlaceOrder, Restock};
use composable::SystemClock;
use serde_json::Value;
use support::{Database, Process};

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace: String,
    id: String,
    parent: String,
    attributes: BTreeMap<String, String>,
}

/// An OTLP/HTTP collector on loopback that keeps every span posted to `/v1/traces` as JSON.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

impl Collector {
    fn start() -> (Self, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the collector");
        let address = listener.local_addr().expect("its address");
        let collector = Self::default();
        let keeper = collector.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let keeper = keeper.clone();
                std::thread::spawn(move || keeper.serve(stream));
            }
        });
        (collector, address)
    }

    /// Answers the requests of one connection until the client closes it.
    fn serve(&self, stream: TcpStream) {
        let Ok(mut writer) = stream.try_clone() else { return };
        let mut reader = BufReader::new(stream);
        loop {
            let mut request = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().expect("a content length");
                }
                if request.is_empty() {
                    request = line;
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            assert!(request.starts_with("POST /v1/traces "), "unexpected request: {request}");
            let body: Value = serde_json::from_slice(&body).expect("OTLP JSON");
            self.keep(&body);
            let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                          Content-Length: 2\r\n\r\n{}";
            if writer.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    }

    fn keep(&self, body: &Value) {
        let text = |value: &Value| match value {
            Value::Object(typed) => typed
                .values()
                .next()
                .map(|value| value.as_str().map_or_else(|| value.to_string(), str::to_owned))
                .unwrap_or_default(),
            other => other.to_string(),
        };
        let list = |value: &Value, key: &str| value[key].as_array().cloned().unwrap_or_default();
        let mut spans = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for resource in list(body, "resourceSpans") {
            let attributes: BTreeMap<String, String> = list(&resource["resource"], "attributes")
                .iter()
                .map(|kv| (kv["key"].as_str().unwrap_or_default().to_owned(), text(&kv["value"])))
                .collect();
            let service = attributes.get("service.name").cloned().unwrap_or_default();
            for scope in list(&resource, "scopeSpans") {
                for span in list(&scope, "spans") {
                    let field = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
                    spans.push(Span {
                        service: service.clone(),
                        name: field("name"),
                        trace: field("traceId"),
                        id: field("spanId"),
                        parent: field("parentSpanId"),
                        attributes: list(&span, "attributes")
                            .iter()
                            .map(|kv| {
                                (
                                    kv["key"].as_str().unwrap_or_default().to_owned(),
                                    text(&kv["value"]),
                                )
                            })
                            .collect(),
                    });
                }
            }
        }
    }

    fn spans(&self) -> Vec<Span> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

const ORDERS: usize = 4;

fn place(order: usize) -> (String, PlaceOrder) {
    let id = format!("o{order}");
    let card = if order == ORDERS - 1 { DECLINED_CARD } else { "tok_visa" };
    let place = PlaceOrder {
        order_id: id.clone(),
        sku: "tea".into(),
        quantity: 1,
        total: 500,
        card: card.into(),
    };
    (id, place)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_checkout_is_one_trace_across_the_processes_it_crosses() {
    let (collector, address) = Collector::start();
    let endpoint = format!("http://{address}");
    let database = Database::create("checkout_traces").await;
    let prefix = database.prefix.clone();
    let otel = |service: &str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
            ("OTEL_SERVICE_NAME", service.to_owned()),
        ]
    };
    let commands =
        Process::with_env(&database.url, &prefix, "relay,commands", &otel("checkout-commands"));
    let saga = Process::with_env(&database.url, &prefix, "checkout", &otel("checkout-saga"));
    // The test is the front end, and traced too: each order placed is the root of its trace.
    let front = Telemetry::install(
        "warn",
        Some(&OtlpConfig { endpoint, service: "checkout-front".into() }),
    )
    .expect("the front end exports its traces");

    let runners = Aggregates::new(&database.store, &SystemClock);
    runners
        .inventory
        .execute("tea", Restock { quantity: 100, manual: false })
        .await
        .expect("restock");
    for order in 0..ORDERS {
        let (id, place) = place(order);
        runners.orders.execute(&id, place).await.expect("place an order");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    for order in 0..ORDERS {
        let (id, _) = place(order);
        while runners.orders.load(&id).await.expect("load").state.status == OrderStatus::Placed {
            assert!(Instant::now() < deadline, "order {id} still placed after 90 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Stopping flushes every process's spans.
    saga.terminate();
    commands.terminate();
    tokio::task::spawn_blocking(move || front.shutdown())
        .await
        .expect("the flush ran")
        .expect("the front end's spans are sent");
    database.drop().await;

    let spans = collector.spans();
    for order in 0..ORDERS {
        let (id, place) = place(order);
        let stream = format!("order-{id}");
        let roots: Vec<&Span> = spans
            .iter()
            .filter(|span| {
                span.service == "checkout-front"
                    && span.name == "command"
                    && span.attributes.get("stream") == Some(&stream)
            })
            .collect();
        assert_eq!(roots.len(), 1, "one span placed {id}: {roots:#?}");
        let root = roots[0];
        assert!(root.parent.is_empty(), "placing {id} starts its trace");
        let trace: Vec<&Span> = spans.iter().filter(|span| span.trace == root.trace).collect();

        // One tree: every span but the root hangs under another span of the same trace.
        let ids: BTreeSet<&str> = trace.iter().map(|span| span.id.as_str()).collect();
        for span in &trace {
            assert!(
                span.id == root.id || ids.contains(span.parent.as_str()),
                "{id}: {} in {} has no parent in the trace: {trace:#?}",
                span.name,
                span.service
            );
        }
        let services: BTreeSet<&str> = trace.iter().map(|span| span.service.as_str()).collect();
        assert_eq!(
            services,
            BTreeSet::from(["checkout-commands", "checkout-front", "checkout-saga"]),
            "{id}'s checkout crosses all three processes"
        );
        let steps = |name: &str| {
            trace
                .iter()
                .filter(|span| {
                    span.name == "saga.step"
                        && span.attributes.get("step").map(String::as_str) == Some(name)
                })
                .count()
        };
        let commands_on = |aggregate: &str| {
            trace
                .iter()
                .filter(|span| {
                    span.service == "checkout-commands"
                        && span.name == "command"
                        && span.attributes.get("aggregate").map(String::as_str) == Some(aggregate)
                })
                .count()
        };
        assert_eq!(steps("order_placed"), 1, "{id}: the saga's first step: {trace:#?}");
        assert!(commands_on("payment") >= 1, "{id}: the charge, in the command service");
        if place.card == DECLINED_CARD {
            assert!(commands_on("order") >= 1, "{id}: the cancellation");
        } else {
            assert_eq!(steps("payment_captured"), 1, "{id}: the step on the captured payment");
            assert_eq!(steps("stock_reserved"), 1, "{id}: the step on the reserved stock");
            assert!(commands_on("inventory") >= 1, "{id}: the reservation");
            assert!(commands_on("order") >= 1, "{id}: the confirmation");
        }
    }
}
