//! Liveness, readiness and graceful shutdown through the host, in memory.
//!
//! An order starts a shipping saga, which ships it through a second aggregate; that
//! aggregate's appends go through a gate the test holds shut, so a service is caught with work
//! in hand: the saga's input (a consumer of the log) mid-batch in process, the command service
//! (a consumer of the bus) mid-delivery on a bus. Readiness moves from not ready to ready as the
//! services catch up, and a process standing by for another's claim is ready; a failed service
//! makes the process not live; a shutdown lets the work in hand finish within the grace period,
//! and aborts and reports a service stuck past it — whose work a restart then does, once. Last,
//! the probes over HTTP answer 200 and 503 and survive garbage, oversized and never-finished
//! requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use composable::bus::InMemoryBus;
use composable::checkpoint::InMemoryCheckpointStore;
use composable::host::{
    App, HealthServer, Readiness, ReadyState, Role, RunningApp, Shutdown, ShutdownCause,
};
use composable::projection::ProjectionRunner;
use composable::projection::{DocumentBatch, DocumentError, InMemoryDocuments, OnFailure};
use composable::saga::{Dispatch, InMemoryTimerStore};
use composable::service::{self, ServiceError};
use composable::testing::HookedStore;
use composable::{
    AggregateRunner, EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent,
    StreamId, aggregate, apply, command, event, project, projection, saga, start, step,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use uuid::Uuid;

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    pub id: String,
}

#[event(name = "shipment.shipped", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipped {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Place {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ship {
    pub id: String,
}

#[derive(Debug, Default)]
pub struct Order;

#[aggregate(stream = "order")]
impl Order {
    #[command]
    fn place(&self, command: Place) -> Placed {
        Placed { id: command.id }
    }

    #[apply]
    fn placed(&mut self, _event: &Placed) {}
}

#[derive(Debug, thiserror::Error)]
#[error("already shipped")]
pub struct AlreadyShipped;

#[derive(Debug, Default)]
pub struct Shipment {
    shipped: bool,
}

#[aggregate(stream = "shipment")]
impl Shipment {
    #[command]
    fn ship(&self, command: Ship) -> Result<Shipped, AlreadyShipped> {
        if self.shipped {
            return Err(AlreadyShipped);
        }
        Ok(Shipped { id: command.id })
    }

    #[apply]
    fn shipped(&mut self, _event: &Shipped) {
        self.shipped = true;
    }
}

#[derive(Debug, Default)]
pub struct Shipping;

#[saga(name = "shipping", key = id)]
impl Shipping {
    #[start(no_compensation)]
    fn placed(&mut self, event: &Placed) -> Dispatch {
        Dispatch::to::<Shipment>(&event.id, Ship { id: event.id.clone() })
    }

    #[step(end)]
    fn shipped(&mut self, _event: &Shipped) {}
}

/// Orders per id, failing on what it cannot decode when told to stop on failures.
struct Orders;

#[projection(name = "orders", store = InMemoryDocuments)]
impl Orders {
    #[project]
    fn placed(&self, batch: &mut DocumentBatch, placed: &Placed) -> Result<(), DocumentError> {
        batch.put("orders", &placed.id, &placed.id)
    }
}

/// The store of these tests: in memory, with a gate.
type Store = HookedStore<InMemoryEventStore>;

/// An in-memory store whose appends to `shipment` streams wait while its gate is shut, and its
/// gate (clones share both).
#[derive(Clone)]
struct Gated {
    store: Store,
    open: Arc<watch::Sender<bool>>,
    waiting: Arc<AtomicUsize>,
}

impl Gated {
    fn shut() -> Self {
        let open = Arc::new(watch::channel(false).0);
        let waiting = Arc::new(AtomicUsize::new(0));
        let (gate, held) = (Arc::clone(&open), Arc::clone(&waiting));
        let store = HookedStore::new(InMemoryEventStore::new()).before_append(move |stream, _| {
            let (gate, held) = (Arc::clone(&gate), Arc::clone(&held));
            let shipment = stream.category() == "shipment";
            async move {
                if shipment {
                    held.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.subscribe().wait_for(|open| *open).await;
                    held.fetch_sub(1, Ordering::SeqCst);
                }
                Ok(())
            }
        });
        Self { store, open, waiting }
    }

    fn open(&self) {
        self.open.send_replace(true);
    }

    /// Waits (bounded) until an append is held at the gate.
    async fn wait_for_a_held_append(&self) {
        within(WAIT, "an append held at the gate", async {
            while self.waiting.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }
}

impl std::ops::Deref for Gated {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(limit: Duration, what: &str, work: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, work).await {
        Ok(done) => done,
        Err(_) => panic!("{what}: not within {limit:?}"),
    }
}

type OrderRunner = Arc<AggregateRunner<Order, Store>>;
type ShipmentRunner = Arc<AggregateRunner<Shipment, Store>>;

fn runners(store: &Gated) -> (OrderRunner, ShipmentRunner) {
    (
        Arc::new(AggregateRunner::new(store.store.clone(), ())),
        Arc::new(AggregateRunner::new(store.store.clone(), ())),
    )
}

/// The shop in one process: the saga's input reads the log, its commands go to the runners.
fn in_process(store: &Gated, checkpoints: &InMemoryCheckpointStore) -> RunningApp<Store> {
    let (orders, shipments) = runners(store);
    App::in_process("shop", store.store.clone())
        .timers(InMemoryTimerStore::new())
        .checkpoints(checkpoints.clone())
        // A claim an aborted process leaves behind lapses soon.
        .claim_ttl(Duration::from_millis(500))
        .aggregate(&orders)
        .aggregate(&shipments)
        .saga::<Shipping>()
        .build()
        .expect("the wiring is complete")
        .start()
}

async fn place(store: &Gated, orders: usize) {
    let (runner, _) = runners(store);
    for order in 0..orders {
        runner
            .execute(format!("o{order}"), Place { id: format!("o{order}") })
            .await
            .expect("place");
    }
}

/// How many times each order's shipment was shipped.
async fn shipped(store: &Gated, orders: usize) -> Vec<usize> {
    let mut shipped = Vec::new();
    for order in 0..orders {
        let stream = StreamId::new("shipment", format!("o{order}")).expect("a stream id");
        let version = store.inner().stream_version(&stream).await.expect("read");
        shipped.push(usize::try_from(version.get()).expect("a count"));
    }
    shipped
}

/// Waits until `running` has shipped every order of [`place`]`(store, 3)` (saying `what` when it
/// does not), checks it shipped each once, and stops it.
async fn ships_each_once(store: &Gated, running: RunningApp<Store>, what: &str) {
    within(WAIT, what, async {
        while shipped(store, 3).await != [1, 1, 1] {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    running.settle().await.expect("settles");
    assert_eq!(shipped(store, 3).await, [1, 1, 1]);
    running.stop().await.expect("stops");
}

async fn wait_until_ready<S: EventStore>(running: &RunningApp<S>) {
    wait_for_readiness(running, "ready", Readiness::is_ready).await;
}

/// Waits until `running`'s readiness is as `reached` says (saying `what` when it never is).
async fn wait_for_readiness<S: EventStore>(
    running: &RunningApp<S>,
    what: &str,
    reached: impl Fn(&Readiness) -> bool,
) {
    within(WAIT, what, async {
        while !reached(&running.readiness()) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_moves_from_not_ready_to_ready_as_the_services_catch_up() {
    let store = Gated::shut();
    place(&store, 3).await;
    let running = in_process(&store, &InMemoryCheckpointStore::new());

    // The saga's input is held on its first batch: running, not caught up. Its timers start on
    // their own task, so wait for every other service to have started.
    store.wait_for_a_held_append().await;
    wait_for_readiness(&running, "the other services start", |readiness| {
        readiness.not_ready().all(|service| service.state != ReadyState::Starting)
    })
    .await;
    let readiness = running.readiness();
    assert!(!readiness.is_ready(), "{readiness}");
    let held: Vec<_> = readiness.not_ready().collect();
    assert_eq!(held.len(), 1, "{readiness}");
    assert_eq!(held[0].name, "saga.shipping");
    assert_eq!(held[0].role, Role::Saga("shipping"));
    assert!(matches!(held[0].state, ReadyState::CatchingUp { .. }), "{readiness}");
    assert!(readiness.to_string().starts_with("not ready\n"), "{readiness}");
    assert!(running.liveness().is_live());

    store.open();
    wait_until_ready(&running).await;
    let readiness = running.readiness();
    assert!(readiness.services.iter().all(|service| service.state == ReadyState::Ready));
    running.settle().await.unwrap();
    assert_eq!(shipped(&store, 3).await, [1, 1, 1]);

    // Ready it stays while it works through the next burst.
    let (orders, _) = runners(&store);
    for order in 0..20 {
        orders.execute(format!("late{order}"), Place { id: format!("late{order}") }).await.unwrap();
    }
    assert!(running.readiness().is_ready());
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_standing_by_for_another_ones_claim_is_ready() {
    let store = Gated::shut();
    store.open();
    let checkpoints = InMemoryCheckpointStore::new();
    let active = in_process(&store, &checkpoints);
    wait_until_ready(&active).await;
    let standby = in_process(&store, &checkpoints);
    wait_until_ready(&standby).await;
    let readiness = standby.readiness();
    let input = readiness.services.iter().find(|service| service.name == "saga.shipping");
    assert_eq!(input.map(|service| &service.state), Some(&ReadyState::Standby), "{readiness}");
    assert!(readiness.to_string().contains("saga.shipping (shipping): standby"), "{readiness}");
    standby.stop().await.unwrap();
    active.stop().await.unwrap();
}

fn corrupt_placed() -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        name: "order.placed".into(),
        version: 1,
        format: "bincode".into(),
        payload: vec![0xff; 3],
        metadata: EventMetadata::new_flow(chrono::Utc::now()),
    }
}

#[tokio::test]
async fn a_failed_service_makes_the_process_not_live_and_shuts_it_down() {
    let store = InMemoryEventStore::new();
    let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
    let running = App::in_process("shop", store.clone())
        .aggregate(&orders)
        .projection_runner(
            ProjectionRunner::new(Orders, InMemoryDocuments::new()).on_failure(OnFailure::Stop),
        )
        .build()
        .expect("the wiring is complete")
        .start();
    wait_until_ready(&running).await;
    assert!(running.liveness().is_live());
    let probes = running.probes();

    let stream = StreamId::new("order", "broken").unwrap();
    store.append(&stream, ExpectedVersion::Any, vec![corrupt_placed()]).await.unwrap();
    // Never asked to stop: the failure ends the run.
    let report =
        within(WAIT, "the shutdown", running.until(std::future::pending::<()>(), &Shutdown::new()))
            .await;

    let ShutdownCause::Failed(failed) = &report.cause else {
        panic!("shut down for another cause: {report}");
    };
    assert_eq!(failed.name, "projection.orders");
    let liveness = probes.liveness();
    assert!(!liveness.is_live());
    assert_eq!(liveness.failed.len(), 1);
    assert_eq!(liveness.failed[0].name, "projection.orders");
    assert!(liveness.failed[0].reason.contains("cannot decode"), "{liveness}");
    assert!(!probes.readiness().is_ready());
    assert!(!report.is_clean());
    assert!(
        matches!(report.into_result(), Err(composable::host::RunError::Failed(errors)) if errors.len() == 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_lets_the_batch_in_hand_finish_and_saves_its_checkpoint() {
    let store = Gated::shut();
    let checkpoints = InMemoryCheckpointStore::new();
    place(&store, 3).await;
    let running = in_process(&store, &checkpoints);
    store.wait_for_a_held_append().await;
    let probes = running.probes();

    // The signal comes while the saga's input holds its first batch; the batch finishes soon
    // after, well within the grace period.
    let gate = store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        gate.open();
    });
    let started = Instant::now();
    let report =
        running.until(std::future::ready(()), &Shutdown::new().grace(Duration::from_secs(5))).await;
    assert!(started.elapsed() < Duration::from_secs(5), "{report}");
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        report.services.iter().map(|service| service.name.as_str()).collect::<Vec<_>>(),
        ["saga.shipping.timers", "saga.shipping"],
        "stopped in the reverse order of registration"
    );
    assert!(probes.readiness().shutting_down);
    assert!(!probes.readiness().is_ready());

    // What it handled, it checkpointed: a restart does the rest, and repeats nothing.
    let handled: usize = shipped(&store, 3).await.iter().sum();
    assert!(handled >= 1, "the batch in hand was finished");
    ships_each_once(&store, in_process(&store, &checkpoints), "the rest shipped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_stuck_past_the_grace_period_is_aborted_and_reported_and_its_work_redone() {
    let store = Gated::shut();
    let checkpoints = InMemoryCheckpointStore::new();
    place(&store, 3).await;
    let running = in_process(&store, &checkpoints);
    store.wait_for_a_held_append().await;

    let grace = Duration::from_millis(300);
    let started = Instant::now();
    let report = within(
        WAIT,
        "the shutdown",
        running.until(std::future::ready(()), &Shutdown::new().grace(grace)),
    )
    .await;
    let took = started.elapsed();
    assert!(took >= grace.saturating_sub(grace / 10), "it waited for the stuck one: {took:?}");
    assert!(took < grace + Duration::from_secs(1), "bounded by the grace period: {took:?}");
    assert!(!report.is_clean());
    let aborted: Vec<_> = report.aborted().map(|service| service.name.as_str()).collect();
    assert_eq!(aborted, ["saga.shipping"], "{report}");
    assert!(matches!(&report.services[0].outcome, Ok(())), "the timers stopped cleanly: {report}");
    assert!(report.to_string().contains("did not stop within"), "{report}");
    assert_eq!(shipped(&store, 3).await, [0, 0, 0], "nothing got past the gate");

    // The aborted batch was not checkpointed: a restart handles it, once.
    store.open();
    ships_each_once(
        &store,
        in_process(&store, &checkpoints),
        "every order shipped after the restart",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_bus_the_delivery_in_hand_is_finished_and_the_rest_left_to_the_next_process() {
    let store = Gated::shut();
    let bus = InMemoryBus::new();
    let checkpoints = InMemoryCheckpointStore::new();
    let start = |store: &Gated| {
        let (orders, shipments) = runners(store);
        App::on_bus("shop", store.store.clone(), bus.clone())
            .timers(InMemoryTimerStore::new())
            .checkpoints(checkpoints.clone())
            .aggregate(&orders)
            .aggregate(&shipments)
            .saga::<Shipping>()
            .build()
            .expect("the wiring is complete")
            .start()
    };
    place(&store, 3).await;
    let running = start(&store);
    // The command service holds a delivery: its handler's append waits at the gate.
    store.wait_for_a_held_append().await;
    let gate = store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        gate.open();
    });
    let report =
        running.until(std::future::ready(()), &Shutdown::new().grace(Duration::from_secs(5))).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        report.services.iter().map(|service| service.name.as_str()).collect::<Vec<_>>(),
        ["saga.shipping.timers", "saga.shipping", "commands[order,shipment]", "shop.relay"],
        "sagas before the command service, the command service before the relay"
    );
    let handled: usize = shipped(&store, 3).await.iter().sum();
    assert!(handled >= 1, "the delivery in hand was handled");

    // The next process finds what was not taken, and nothing is shipped twice.
    ships_each_once(&store, start(&store), "every order shipped").await;
}

#[tokio::test]
async fn a_service_that_panics_is_not_live() {
    struct Panics;
    impl service::Service for Panics {
        fn name(&self) -> String {
            "panics".into()
        }
        async fn run(self, _context: service::ServiceContext) -> Result<(), composable::BoxError> {
            panic!("out of cheese")
        }
    }
    let mut handle = service::spawn(Panics);
    let health = handle.wait_until(|_| false).await;
    assert_eq!(health.state, service::ServiceState::Failed("panicked: out of cheese".into()));
    assert!(matches!(handle.stop().await, Err(ServiceError::Aborted { .. })));
}

/// Sends `request` raw and reads the answer until the server closes (bounded).
async fn raw(address: std::net::SocketAddr, request: &[u8]) -> String {
    within(WAIT, "an answer", async {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        // The server may close before reading a huge request whole.
        let _ = stream.write_all(request).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
}

async fn get(address: std::net::SocketAddr, path: &str) -> String {
    raw(address, format!("GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n").as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_endpoint_answers_200_or_503_and_survives_hostile_clients() {
    let store = Gated::shut();
    place(&store, 1).await;
    let running = in_process(&store, &InMemoryCheckpointStore::new());
    store.wait_for_a_held_append().await;
    let server = HealthServer::bind("127.0.0.1:0".parse().unwrap(), running.probes())
        .await
        .expect("bind")
        .request_timeout(Duration::from_millis(300))
        .max_connections(4);
    let address = server.local_addr();
    let server = service::spawn(server);

    let live = get(address, "/health/live").await;
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    assert!(live.ends_with("live\n"), "{live}");
    let ready = get(address, "/health/ready").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("\r\n\r\nnot ready\n"), "{ready}");
    assert!(ready.contains("saga.shipping (shipping): catching up"), "{ready}");
    assert!(get(address, "/elsewhere").await.starts_with("HTTP/1.1 404"));
    let post =
        raw(address, b"POST /health/ready HTTP/1.1\r\nHost: probe\r\nContent-Length: 3\r\n\r\nabc")
            .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");

    // Garbage, and a head far larger than the server reads: refused, nothing more (the huge
    // one may be cut off by a reset before its answer arrives, as the server stops reading).
    let garbage = raw(address, b"\x00\x01\x02 not http at all\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let mut huge = b"GET /health/live HTTP/1.1\r\nX-Filler: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1 << 20));
    huge.extend_from_slice(b"\r\n\r\n");
    let refused = raw(address, &huge).await;
    assert!(
        refused.is_empty() || refused.starts_with("HTTP/1.1 431"),
        "{}",
        &refused[..refused.len().min(200)]
    );

    // Clients that never finish their request: all the connection slots taken, one more is
    // closed at once, and each slot comes back after the request timeout.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(b"GET /health/live HTTP/1.1\r\n").await.unwrap();
        slow.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut extra = TcpStream::connect(address).await.unwrap();
    let mut nothing = Vec::new();
    let _ = within(WAIT, "the extra connection closed", extra.read_to_end(&mut nothing)).await;
    assert!(nothing.is_empty());
    let started = Instant::now();
    for mut stream in slow {
        let mut rest = Vec::new();
        let _ = within(WAIT, "a slow connection closed", stream.read_to_end(&mut rest)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(2), "closed after the request timeout");

    // Through all of it the server kept answering; and readiness follows the services.
    store.open();
    wait_until_ready(&running).await;
    let ready = get(address, "/health/ready").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains("\r\n\r\nready\nsaga.shipping (shipping): ready\n"), "{ready}");

    // While it shuts down, and after, it is not ready.
    let report = running.until(std::future::ready(()), &Shutdown::new()).await;
    assert!(report.is_clean(), "{report}");
    let ready = get(address, "/health/ready").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("shutting down"), "{ready}");
    server.stop().await.unwrap();
}
