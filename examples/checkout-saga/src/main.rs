//! Runs the four checkout scenarios on in-memory backends and prints the saga's progress step
//! by step: the happy path, a declined card, missing stock, and a warehouse that never answers.
//!
//! Time is a test clock, so the 30-second timeout passes instantly and the output is the same
//! on every run. After the scenarios, it queries the checkout board (`checkout_saga::board`), a
//! read model of the orders and the stock projected from the same log.
//!
//! With `DATABASE_URL` and `KAFKA_BROKERS` both set, the same scenarios run on PostgreSQL and
//! Kafka instead, through the application host (`checkout_saga::hosted`): the events, the
//! saga's timers and the checkpoints in the database, the outbox relay publishing the events,
//! the saga reading the log and sending its commands through the broker to the command service
//! hosting the aggregates, all in this process. Order ids and skus then carry a tag of the run,
//! so runs against the same database do not collide. To split the services across processes,
//! run `checkout-service --role ...` (`src/bin/checkout-service.rs`).

use std::process::ExitCode;
use std::time::Duration;

use checkout_saga::board::{self, CheckoutBoard, OrderLine, StockLevel};
use checkout_saga::{Checkout, DECLINED_CARD, OrderStatus, PlaceOrder, Restock, hosted};
use composable::host::RunningApp;
use composable::projection::{InMemoryDocuments, ProjectionRunner};
use composable::saga::{InMemoryTimerStore, Progress, SagaStatus, TimerStore};
use composable::{BoxError as Error, EventStore, InMemoryEventStore, TestClock};
use composable_postgres::{PostgresEventStore, PostgresTimerStore};

struct Scenario {
    title: &'static str,
    sku: &'static str,
    card: &'static str,
    stock: u32,
    manual: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let scenarios = [
        Scenario { title: "happy path", sku: "tea", card: "tok_visa", stock: 10, manual: false },
        Scenario {
            title: "the card is declined",
            sku: "coffee",
            card: DECLINED_CARD,
            stock: 10,
            manual: false,
        },
        Scenario { title: "out of stock", sku: "cocoa", card: "tok_visa", stock: 1, manual: false },
        Scenario {
            title: "the warehouse never answers",
            sku: "chai",
            card: "tok_visa",
            stock: 10,
            manual: true,
        },
    ];
    let result = match (arguments(), env("DATABASE_URL"), env("KAFKA_BROKERS")) {
        (Err(error), _, _) => Err(error),
        (Ok(()), Some(database_url), Some(brokers)) => {
            run_on_the_host(&scenarios, &database_url, &brokers).await
        }
        (Ok(()), _, _) => run_in_memory(&scenarios).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// No arguments: the backends come from the environment.
fn arguments() -> Result<(), Error> {
    match std::env::args().nth(1) {
        None => Ok(()),
        Some(argument) => Err(format!(
            "unexpected argument `{argument}`: the scenarios take none (set DATABASE_URL and \
             KAFKA_BROKERS to run them on PostgreSQL and Kafka; `checkout-service --role ...` \
             runs the services by role)"
        )
        .into()),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The scenarios one after the other on one in-memory store, then a query of the read model
/// projected from it.
async fn run_in_memory(scenarios: &[Scenario]) -> Result<(), Error> {
    let store = InMemoryEventStore::new();
    let clock = TestClock::new();
    let checkout = Checkout::new(store.clone(), InMemoryTimerStore::new(), clock.clone());
    for (number, scenario) in (1..).zip(scenarios) {
        let ids = Ids { order_id: format!("{}", 1000 + number), sku: scenario.sku.into() };
        run(number, scenario, &checkout, &clock, &ids, None).await?;
    }
    let read = InMemoryDocuments::new();
    ProjectionRunner::new(CheckoutBoard, read.clone()).consumer(store).catch_up().await?;
    print_board(&read)?;
    Ok(())
}

/// The checkout board: every order and every SKU, as the read model answers.
fn print_board(read: &InMemoryDocuments) -> Result<(), Error> {
    println!("== the checkout board: a read model of the orders and the stock ==");
    for (order_id, line) in read.list::<OrderLine>(board::ORDERS, "")? {
        println!(
            "order {order_id}: {} x {}, {}.{:02}, {}",
            line.quantity,
            line.sku,
            line.total / 100,
            line.total % 100,
            line.status
        );
    }
    for (sku, level) in read.list::<StockLevel>(board::STOCK, "")? {
        println!("stock {sku}: {} available, {} reserved", level.available, level.reserved);
    }
    Ok(())
}

/// Every scenario on one database and broker, every service of the application host in this
/// process.
async fn run_on_the_host(
    scenarios: &[Scenario],
    database_url: &str,
    brokers: &str,
) -> Result<(), Error> {
    let store = PostgresEventStore::connect(database_url).await?;
    hosted::migrate(&store).await?;
    let bus = hosted::connect_bus(hosted::kafka_config(brokers), "").await?;
    let clock = TestClock::new();
    let timers = PostgresTimerStore::new(store.pool().clone());
    // The host runs these runners; the checkout's own saga runner only reads the saga's state.
    let checkout = Checkout::new(store.clone(), timers, clock.clone());
    let runners = checkout.aggregates();
    let app = hosted::app(&store, &bus, &runners, clock.clone()).build()?;
    hosted::create_topics(&bus, app.topics()).await?;
    let running = app.start();
    println!(
        "on PostgreSQL and Kafka at {brokers}, through the application host: the outbox relay, \
         the command service and the saga run in this process\n"
    );
    let tag = uuid::Uuid::now_v7().simple().to_string()[24..].to_owned();
    let mut result = Ok(());
    for (number, scenario) in (1..).zip(scenarios) {
        let ids = Ids {
            order_id: format!("{tag}-{}", 1000 + number),
            sku: format!("tea-{tag}-{number}"),
        };
        result = run(number, scenario, &checkout, &clock, &ids, Some(&running)).await;
        if result.is_err() {
            break;
        }
    }
    // The scenario's error, if any, is the one to report; a failure to stop comes second.
    let stopped = running.stop().await;
    result?;
    Ok(stopped?)
}

struct Ids {
    order_id: String,
    sku: String,
}

/// Runs the saga until it is idle and prints what it did: step by step from the runner here,
/// or, through the host, the steps its instance completed once the host settled.
async fn settle<S: EventStore + Clone, T: TimerStore>(
    checkout: &Checkout<S, T>,
    host: Option<&RunningApp<S>>,
    order_id: &str,
) -> Result<Option<SagaStatus>, Error> {
    let Some(running) = host else {
        let progress = checkout.saga.run_until_idle().await?;
        print_progress(&progress);
        return Ok(progress.last().map(|last| last.status));
    };
    tokio::time::timeout(Duration::from_secs(60), running.settle())
        .await
        .map_err(|_| format!("the host did not settle within 60 s: {:?}", running.health()))??;
    let summary = checkout.saga.load(order_id).await?;
    let status = summary.as_ref().map(|summary| summary.status);
    if let Some(summary) = summary {
        println!("  steps completed {:?} -> {:?}", summary.completed, summary.status);
    }
    Ok(status)
}

/// After the clock moved past a timeout: waits (real time, up to 30 s) until the host's timer
/// service fired it, then for the host to settle.
async fn settle_timeout<S: EventStore + Clone, T: TimerStore>(
    checkout: &Checkout<S, T>,
    host: Option<&RunningApp<S>>,
    order_id: &str,
) -> Result<Option<SagaStatus>, Error> {
    if host.is_some() {
        let fired = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let summary = checkout.saga.load(order_id).await?;
                if summary.is_none_or(|summary| summary.status != SagaStatus::Running) {
                    return Ok::<(), Error>(());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        fired.map_err(|_| "the host did not fire the timeout within 30 s")??;
    }
    settle(checkout, host, order_id).await
}

async fn run<S: EventStore + Clone, T: TimerStore>(
    number: u32,
    scenario: &Scenario,
    checkout: &Checkout<S, T>,
    clock: &TestClock,
    ids: &Ids,
    host: Option<&RunningApp<S>>,
) -> Result<(), Error> {
    println!("== {number}. {} ==", scenario.title);
    let Ids { order_id, sku } = ids;
    checkout
        .inventory
        .execute(sku, Restock { quantity: scenario.stock, manual: scenario.manual })
        .await?;
    let place = PlaceOrder {
        order_id: order_id.clone(),
        sku: sku.clone(),
        quantity: 2,
        total: 900,
        card: scenario.card.into(),
    };
    checkout.orders.execute(order_id, place).await?;
    println!("order {order_id} placed: 2 x {sku}, 9.00, paid with {}", scenario.card);

    if settle(checkout, host, order_id).await? == Some(SagaStatus::Running) {
        println!("  ... no answer; the clock moves 30 s on");
        clock.advance(Duration::from_secs(30)).await;
        settle_timeout(checkout, host, order_id).await?;
    }

    let order = checkout.orders.load(order_id).await?.state;
    let payment = checkout.payments.load(order_id).await?.state;
    let stock = checkout.inventory.load(sku).await?.state;
    let saga = checkout.saga.load(order_id).await?.map(|summary| summary.status);
    println!(
        "result: saga {saga:?}, order {:?}, captured {}.{:02}, {sku} available {} ({} reserved)\n",
        order.status,
        payment.captured / 100,
        payment.captured % 100,
        stock.available,
        stock.reserved.values().sum::<u32>(),
    );
    if order.status == OrderStatus::Placed {
        return Err(format!("order {order_id} was left placed").into());
    }
    Ok(())
}

fn print_progress(progress: &[Progress]) {
    for step in progress {
        let trigger = if step.timed_out { "timeout of" } else { "step" };
        println!("  {trigger} `{}`", step.step);
        for dispatch in &step.dispatched {
            println!("    dispatched   {dispatch:?}");
        }
        if let Some(failure) = &step.failure {
            println!("    failed:      {failure}");
        }
        for dispatch in &step.compensations {
            println!("    compensated  {dispatch:?}");
        }
        for (dispatch, reason) in &step.refused_compensations {
            println!("    compensation refused: {dispatch:?}: {reason}");
        }
        println!("    -> {:?}", step.status);
    }
}
