//! Runs the four checkout scenarios on in-memory backends and prints the saga's progress step
//! by step: the happy path, a declined card, missing stock, and a warehouse that never answers.
//!
//! Time is a test clock, so the 30-second timeout passes instantly and the output is the same
//! on every run.
//!
//! With `DATABASE_URL` and `KAFKA_BROKERS` both set, the same scenarios run on PostgreSQL and
//! Kafka instead (see `checkout_saga::distributed`): the events and the saga's timers in the
//! database, the outbox relay publishing the events to `{category}-events`, the saga fed from
//! those topics in the consumer group `checkout-saga`, and its commands sent through the broker
//! to a command service hosting the aggregates. Order ids and skus then carry a tag of the run,
//! so runs against the same database do not collide.
//!
//! `--role` splits that across processes: `aggregates` runs the relay and the command service
//! until interrupted; `saga` runs the scenarios and the saga, and needs an `aggregates` process
//! on the same database and broker; `all` (the default) runs everything in one process.

use std::process::ExitCode;
use std::time::Duration;

use checkout_saga::distributed::{self, Distributed, SagaInput};
use checkout_saga::{Aggregates, Checkout, DECLINED_CARD, OrderStatus, PlaceOrder, Restock};
use composable::saga::{CommandDispatcher, InMemoryTimerStore, Progress, SagaStatus, TimerStore};
use composable::{EventStore, InMemoryEventStore, SystemClock, TestClock};
use composable_postgres::PostgresEventStore;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Scenario {
    title: &'static str,
    card: &'static str,
    stock: u32,
    manual: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let scenarios = [
        Scenario { title: "happy path", card: "tok_visa", stock: 10, manual: false },
        Scenario { title: "the card is declined", card: DECLINED_CARD, stock: 10, manual: false },
        Scenario { title: "out of stock", card: "tok_visa", stock: 1, manual: false },
        Scenario {
            title: "the warehouse never answers",
            card: "tok_visa",
            stock: 10,
            manual: true,
        },
    ];
    let result = match (role(), env("DATABASE_URL"), env("KAFKA_BROKERS")) {
        (Err(error), _, _) => Err(error),
        (Ok(role), Some(database_url), Some(brokers)) => {
            run_distributed(&scenarios, role, &database_url, &brokers).await
        }
        (Ok(Role::All), _, _) => run_in_memory(&scenarios).await,
        (Ok(role), _, _) => {
            Err(format!("--role {role:?} needs DATABASE_URL and KAFKA_BROKERS").into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What this process runs in distributed mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The scenarios and the saga.
    Saga,
    /// The relay and the command service hosting the aggregates.
    Aggregates,
    /// Everything.
    All,
}

/// `--role saga|aggregates|all` (or `--role=...`); `all` when absent.
fn role() -> Result<Role, Error> {
    let mut args = std::env::args().skip(1);
    let mut role = Role::All;
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--role=") {
            Some(value) => value.to_owned(),
            None if arg == "--role" => args.next().ok_or("--role needs a value")?,
            None => {
                return Err(format!(
                    "unknown argument `{arg}`; usage: [--role saga|aggregates|all]"
                )
                .into());
            }
        };
        role = match value.as_str() {
            "saga" => Role::Saga,
            "aggregates" => Role::Aggregates,
            "all" => Role::All,
            other => {
                return Err(
                    format!("unknown role `{other}`: expected saga, aggregates or all").into()
                );
            }
        };
    }
    Ok(role)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Each scenario on its own in-memory store.
async fn run_in_memory(scenarios: &[Scenario]) -> Result<(), Error> {
    for (number, scenario) in (1..).zip(scenarios) {
        let clock = TestClock::new();
        let checkout =
            Checkout::new(InMemoryEventStore::new(), InMemoryTimerStore::new(), clock.clone());
        let ids = Ids { order_id: format!("{}", 1000 + number), sku: "tea".into() };
        run(number, scenario, &checkout, &clock, &ids, None).await?;
    }
    Ok(())
}

/// Every scenario on one database and broker. The relay and the command service run here
/// unless the role is `saga`; the scenarios run here unless it is `aggregates`.
async fn run_distributed(
    scenarios: &[Scenario],
    role: Role,
    database_url: &str,
    brokers: &str,
) -> Result<(), Error> {
    let store = PostgresEventStore::connect(database_url).await?;
    let backends = Distributed::connect(store, distributed::kafka_config(brokers), "").await?;
    let hosting = match role {
        Role::Saga => None,
        Role::Aggregates | Role::All => {
            let aggregates = Aggregates::new(backends.store(), &SystemClock);
            Some((backends.spawn_relay(), backends.spawn_command_service(&aggregates)))
        }
    };
    match role {
        Role::Aggregates => {
            println!(
                "on PostgreSQL and Kafka at {brokers}: relaying events and serving order, \
                 payment and inventory commands until interrupted"
            );
            tokio::signal::ctrl_c().await?;
        }
        Role::Saga | Role::All => {
            let commands =
                if role == Role::Saga { "an aggregates process" } else { "this process" };
            println!(
                "on PostgreSQL and Kafka at {brokers}; the outbox relay publishes to the broker, \
                 and {commands} serves the saga's commands\n"
            );
            run_scenarios(scenarios, &backends).await?;
        }
    }
    if let Some((relay, commands)) = hosting {
        commands.stop().await?;
        relay.stop().await?;
    }
    Ok(())
}

async fn run_scenarios(scenarios: &[Scenario], backends: &Distributed) -> Result<(), Error> {
    let mut input = backends.subscribe_saga("checkout-saga").await?;
    let tag = uuid::Uuid::now_v7().simple().to_string()[24..].to_owned();
    for (number, scenario) in (1..).zip(scenarios) {
        let clock = TestClock::new();
        let checkout = backends.checkout(clock.clone());
        let ids = Ids {
            order_id: format!("{tag}-{}", 1000 + number),
            sku: format!("tea-{tag}-{number}"),
        };
        run(number, scenario, &checkout, &clock, &ids, Some(&mut input)).await?;
    }
    Ok(())
}

struct Ids {
    order_id: String,
    sku: String,
}

/// Runs the saga until it is idle: from the store's log in memory, from Kafka with `input`.
async fn settle<S: EventStore + Clone, T: TimerStore, D: CommandDispatcher>(
    checkout: &Checkout<S, T, D>,
    input: Option<&mut SagaInput>,
) -> Result<Vec<Progress>, Error> {
    match input {
        None => Ok(checkout.saga.run_until_idle().await?),
        Some(input) => input.run_until_idle(&checkout.saga).await,
    }
}

async fn run<S: EventStore + Clone, T: TimerStore, D: CommandDispatcher>(
    number: u32,
    scenario: &Scenario,
    checkout: &Checkout<S, T, D>,
    clock: &TestClock,
    ids: &Ids,
    mut input: Option<&mut SagaInput>,
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

    let mut progress = settle(checkout, input.as_deref_mut()).await?;
    print_progress(&progress);
    if progress.last().is_some_and(|last| last.status == SagaStatus::Running) {
        println!("  ... no answer; the clock moves 30 s on");
        clock.advance(Duration::from_secs(30)).await;
        progress = settle(checkout, input).await?;
        print_progress(&progress);
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
