//! Places, ships and cancels orders through the aggregate runner: on the in-memory event store,
//! or on PostgreSQL when `DATABASE_URL` is set (the schema is migrated on start).
//!
//! ```text
//! order-processing                      # the demo
//! order-processing place FIRST COUNT    # place orders FIRST..FIRST+COUNT, one line each
//! order-processing grow ID COUNT        # place order ID, then add COUNT items, one line each
//! order-processing show ID              # one order, rebuilt from its snapshot and events
//! order-processing project               # keep the order history read model, until stopped
//! order-processing rebuild               # empty the order history and apply the log again
//! order-processing history CUSTOMER      # a customer's orders, from the read model
//! ```
//!
//! `project`, `rebuild` and `history` need PostgreSQL: the read model lives in the database at
//! `READ_DATABASE_URL` (a database of its own), or in the event store's when it is not set.

use std::process::ExitCode;
use std::sync::Arc;

use composable::host::App;
use composable::projection::ProjectionRunner;
use composable::{
    AggregateRunner, Bincode, Codec, EventMetadata, EventStore, ExpectedVersion,
    InMemoryEventStore, NewEvent, StreamId, SystemClock,
};
use composable_postgres::{PostgresEventStore, PostgresReadStore};
use indicatif::{ProgressBar, ProgressStyle};
use order_processing::history::{self, OrderHistory};
use order_processing::{
    AddItem, CancelOrder, LineItem, Order, OrderPlacedV1, PlaceOrder, ShipOrder, ShopEnv, Status,
};

type Error = composable::BoxError;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let database = std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty());
    let outcome = match (database, args.first().map(String::as_str)) {
        (Some(url), Some("project" | "rebuild" | "history")) => read_side(&url, &args).await,
        (None, Some("project" | "rebuild" | "history")) => {
            Err("`project`, `rebuild` and `history` keep the read model on PostgreSQL: set \
             DATABASE_URL"
                .into())
        }
        (Some(url), _) => match postgres(&url).await {
            Ok(store) => run(store, &args).await,
            Err(error) => Err(error),
        },
        (None, _) => run(InMemoryEventStore::new(), &args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn postgres(url: &str) -> Result<PostgresEventStore, Error> {
    let store = PostgresEventStore::connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

/// The read side: the order history in the database at `READ_DATABASE_URL` (or the event
/// store's), its tables migrated on start.
async fn read_side(url: &str, args: &[String]) -> Result<(), Error> {
    let read_url = std::env::var("READ_DATABASE_URL").ok().filter(|url| !url.is_empty());
    let read = PostgresReadStore::connect(read_url.as_deref().unwrap_or(url)).await?;
    read.migrate().await?;
    history::READ_MIGRATIONS.run(read.pool()).await?;
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["project"] => {
            let store = postgres(url).await?;
            let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), env()));
            let running = App::in_process("orders", store)
                .aggregate(&orders)
                .projection(OrderHistory, read)
                .build()?
                .start();
            println!("projecting");
            tokio::select! {
                failed = running.failure() => return Err(format!("{} failed: {:?}", failed.name, failed.health.state).into()),
                stop = tokio::signal::ctrl_c() => stop?,
            }
            running.stop().await?;
            Ok(())
        }
        ["rebuild"] => {
            // Stop `project` first: a rebuild in place and a live runner of the same version
            // would both write. (A new `VERSION` rebuilds without stopping anything.)
            let store = postgres(url).await?;
            let bar = ProgressBar::new(0).with_style(ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events, {per_sec}, {eta} left",
            )?);
            let done = ProjectionRunner::new(OrderHistory, read)
                .rebuild(store, |progress| {
                    bar.set_length(progress.total.max(progress.done));
                    bar.set_position(progress.done);
                })
                .await?;
            bar.finish_and_clear();
            println!(
                "rebuilt the order history from {} events in {:.1?} ({:.0} events/s)",
                done.done,
                done.elapsed,
                done.rate()
            );
            Ok(())
        }
        ["history", customer] => {
            for order in history::customer_orders(&read, customer).await? {
                println!(
                    "{} {} {} items={} total={}",
                    order.order_id,
                    order.customer,
                    order.status,
                    order.items,
                    money(u64::try_from(order.total).unwrap_or(0)),
                );
            }
            Ok(())
        }
        _ => Err("usage: order-processing [project | rebuild | history CUSTOMER]".into()),
    }
}

fn env() -> ShopEnv {
    ShopEnv { clock: Arc::new(SystemClock), max_items: 100_000 }
}

async fn run<S: EventStore + Clone>(store: S, args: &[String]) -> Result<(), Error> {
    let runner = AggregateRunner::<Order, S>::new(store.clone(), env());
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => demo(&runner, &store).await,
        ["place", first, count] => {
            let (first, count): (u64, u64) = (first.parse()?, count.parse()?);
            for id in first..first + count {
                let items = vec![item("tea", 1 + (id % 3) as u32, 450)];
                let done =
                    runner.execute(id, PlaceOrder { customer: format!("c{id}"), items }).await?;
                println!("placed {id} v{}", done.version);
            }
            Ok(())
        }
        ["grow", id, count] => {
            let count: u64 = count.parse()?;
            let items = vec![item("tea", 1, 450)];
            runner.execute(id, PlaceOrder { customer: format!("c{id}"), items }).await?;
            for _ in 0..count {
                let done = runner.execute(id, AddItem { item: item("cake", 1, 300) }).await?;
                println!("added {id} v{}", done.version);
            }
            Ok(())
        }
        ["show", id] => {
            let loaded = runner.load(id).await?;
            let snapshot = loaded.snapshot.map_or("none".to_owned(), |v| v.to_string());
            println!(
                "{id} {:?} items={} total={} v{} snapshot={snapshot}",
                loaded.state.status,
                loaded.state.items.len(),
                loaded.state.total,
                loaded.version
            );
            Ok(())
        }
        _ => Err("usage: order-processing [place FIRST COUNT | grow ID COUNT | show ID | project | history CUSTOMER]".into()),
    }
}

fn item(sku: &str, quantity: u32, unit_price: u64) -> LineItem {
    LineItem { sku: sku.into(), quantity, unit_price }
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

async fn demo<S: EventStore>(runner: &AggregateRunner<Order, S>, store: &S) -> Result<(), Error> {
    for (id, customer, items) in [
        ("1", "ada", vec![item("tea", 2, 450)]),
        ("2", "bob", vec![item("cake", 1, 300), item("tea", 1, 450)]),
    ] {
        let done = runner.execute(id, PlaceOrder { customer: customer.into(), items }).await?;
        println!(
            "order {id}: placed for {customer}, total {} (v{})",
            money(done.state.total),
            done.version
        );
    }
    let done = runner.execute("2", CancelOrder { reason: "changed my mind".into() }).await?;
    println!("order 2: cancelled (v{})", done.version);
    let done = runner.execute("1", ShipOrder { carrier: "post".into() }).await?;
    println!("order 1: shipped by {} (v{})", done.state.carrier.unwrap_or_default(), done.version);
    match runner.execute("2", ShipOrder { carrier: "post".into() }).await {
        Err(error) => println!("order 2: shipping refused: {error}"),
        Ok(_) => return Err("a cancelled order shipped".into()),
    }

    // A payload written by older code, in the first shape of `order.placed` (no total).
    let legacy = OrderPlacedV1 { customer: "cy".into(), items: vec![item("cake", 4, 300)] };
    let row = NewEvent {
        event_id: uuid::Uuid::now_v7(),
        name: "order.placed".into(),
        version: 1,
        format: Bincode::FORMAT.into(),
        payload: Bincode.encode(&legacy)?,
        metadata: EventMetadata::new_flow(composable::Clock::now(&SystemClock)),
    };
    store.append(&StreamId::new("order", "legacy")?, ExpectedVersion::NoStream, vec![row]).await?;
    let loaded = runner.load("legacy").await?;
    assert_eq!(loaded.state.status, Status::Placed);
    println!(
        "order legacy: stored as order.placed v1, loaded as v2 with total {}",
        money(loaded.state.total)
    );
    Ok(())
}
