//! Runs the four checkout scenarios on in-memory backends and prints the saga's progress step
//! by step: the happy path, a declined card, missing stock, and a warehouse that never answers.
//!
//! Time is a test clock, so the 30-second timeout passes instantly and the output is the same
//! on every run.

use std::process::ExitCode;
use std::time::Duration;

use checkout_saga::{Checkout, DECLINED_CARD, OrderStatus, PlaceOrder, Restock};
use composable::saga::{InMemoryTimerStore, Progress, SagaStatus};
use composable::{InMemoryEventStore, TestClock};

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
    for (number, scenario) in (1..).zip(&scenarios) {
        if let Err(error) = run(number, scenario).await {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

async fn run(number: u32, scenario: &Scenario) -> Result<(), Error> {
    println!("== {number}. {} ==", scenario.title);
    let clock = TestClock::new();
    let checkout =
        Checkout::new(InMemoryEventStore::new(), InMemoryTimerStore::new(), clock.clone());
    checkout
        .inventory
        .execute("tea", Restock { quantity: scenario.stock, manual: scenario.manual })
        .await?;
    let order_id = format!("{}", 1000 + number);
    let place = PlaceOrder {
        order_id: order_id.clone(),
        sku: "tea".into(),
        quantity: 2,
        total: 900,
        card: scenario.card.into(),
    };
    checkout.orders.execute(&order_id, place).await?;
    println!("order {order_id} placed: 2 x tea, 9.00, paid with {}", scenario.card);

    let mut progress = checkout.saga.run_until_idle().await?;
    print_progress(&progress);
    if progress.last().is_some_and(|last| last.status == SagaStatus::Running) {
        println!("  ... no answer; the clock moves 30 s on");
        clock.advance(Duration::from_secs(30)).await;
        progress = checkout.saga.run_until_idle().await?;
        print_progress(&progress);
    }

    let order = checkout.orders.load(&order_id).await?.state;
    let payment = checkout.payments.load(&order_id).await?.state;
    let stock = checkout.inventory.load("tea").await?.state;
    let saga = checkout.saga.load(&order_id).await?.map(|summary| summary.status);
    println!(
        "result: saga {saga:?}, order {:?}, captured {}.{:02}, tea available {} ({} reserved)\n",
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
