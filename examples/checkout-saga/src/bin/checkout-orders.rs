//! Places checkout orders in the event store, as a shop's front end would, for the deployed
//! `checkout-service` processes to take through the saga: restocks three SKUs, places the
//! orders one after another (one card in five is declined), then waits until each checkout has
//! finished — confirmed, or cancelled and compensated — and prints how many ended which way.
//!
//! ```sh
//! DATABASE_URL=postgres://… cargo run -p checkout-saga --bin checkout-orders -- --orders 200 --every-ms 20
//! ```
//!
//! Options: `--orders N` (100), `--every-ms MS` between two orders (50), `--wait-s S` for the
//! checkouts to finish (120). Order ids and SKUs carry a tag of the run, so runs against the
//! same database don't collide. Exits with failure when a checkout is still unfinished after
//! the wait.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use checkout_saga::settings::DATABASE_URL;
use checkout_saga::{Aggregates, DECLINED_CARD, OrderStatus, PlaceOrder, Restock};
use composable::{BoxError as Error, SystemClock};
use composable_postgres::PostgresEventStore;

const SKUS: usize = 3;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("checkout-orders: {error}");
            ExitCode::FAILURE
        }
    }
}

struct Options {
    orders: usize,
    every: Duration,
    wait: Duration,
}

fn options() -> Result<Options, Error> {
    let mut options =
        Options { orders: 100, every: Duration::from_millis(50), wait: Duration::from_secs(120) };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let number: u64 =
            value.parse().map_err(|_| format!("{arg} `{value}` is not a whole number"))?;
        match arg.as_str() {
            "--orders" => options.orders = usize::try_from(number)?,
            "--every-ms" => options.every = Duration::from_millis(number),
            "--wait-s" => options.wait = Duration::from_secs(number),
            _ => {
                return Err(format!(
                    "unknown argument `{arg}`; usage: [--orders N] [--every-ms MS] [--wait-s S]"
                )
                .into());
            }
        }
    }
    Ok(options)
}

async fn run() -> Result<(), Error> {
    let options = options()?;
    let url = std::env::var(DATABASE_URL)
        .ok()
        .filter(|url| !url.is_empty())
        .ok_or_else(|| format!("{DATABASE_URL} is not set"))?;
    let store = PostgresEventStore::builder().url(&url)?.max_connections(2).connect().await?;
    store.migrate().await?;
    let runners = Aggregates::new(&store, &SystemClock);
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let tag = &tag[tag.len() - 8..];
    let quantity = u32::try_from(options.orders)?.saturating_add(1);
    for sku in 0..SKUS {
        let restock = Restock { quantity, manual: false };
        runners.inventory.execute(format!("tea-{tag}-{sku}"), restock).await?;
    }

    let started = Instant::now();
    let mut ids = Vec::with_capacity(options.orders);
    for order in 0..options.orders {
        let id = format!("{tag}-{order}");
        let place = PlaceOrder {
            order_id: id.clone(),
            sku: format!("tea-{tag}-{}", order % SKUS),
            quantity: 1,
            total: 500 + order as u64,
            card: if order % 5 == 4 { DECLINED_CARD } else { "tok_visa" }.into(),
        };
        runners.orders.execute(&id, place).await?;
        ids.push(id);
        tokio::time::sleep(options.every).await;
    }
    eprintln!("checkout-orders: placed {} orders tagged {tag}", ids.len());

    let deadline = Instant::now() + options.wait;
    let (mut confirmed, mut cancelled) = (0, 0);
    for id in &ids {
        loop {
            match runners.orders.load(id).await?.state.status {
                OrderStatus::Confirmed => confirmed += 1,
                OrderStatus::Cancelled => cancelled += 1,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                status => {
                    return Err(format!(
                        "order {id} is still {status:?} after {:?}: are the relay, commands and \
                         checkout roles all running?",
                        options.wait
                    )
                    .into());
                }
            }
            break;
        }
    }
    println!(
        "checkout-orders: {confirmed} confirmed, {cancelled} cancelled, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
