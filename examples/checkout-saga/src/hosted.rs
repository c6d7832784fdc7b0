//! The checkout's services on PostgreSQL and Kafka, as configuration of the application host:
//! the events, the saga's timers and every consumer's checkpoint in one database; the outbox
//! relay, the command service hosting the three aggregates, and the saga reading its events and
//! sending its commands through the broker. [`app`] is all of it; `src/bin/checkout-service.rs`
//! runs it as a process, in any subset of its roles (`relay`, `commands`, `checkout`).

use composable::Clock;
use composable::host::{App, AppBuilder};
use composable_postgres::{PostgresCheckpointStore, PostgresEventStore, PostgresTimerStore};

use crate::distributed::{Bus, Error, PARTITIONS};
use crate::{Aggregates, CheckoutSaga};

/// The checkout on `store` and `bus`, time from `clock`, with `runners` hosted behind their
/// command topics: build it with [`AppBuilder::build`] (after choosing roles, if not all).
pub fn app(
    store: &PostgresEventStore,
    bus: &Bus,
    runners: &Aggregates<PostgresEventStore>,
    clock: impl Clock,
) -> AppBuilder<PostgresEventStore, PostgresTimerStore, Bus> {
    let pool = store.pool().clone();
    App::on_bus("checkout", store.clone(), PostgresTimerStore::new(pool.clone()), bus.clone())
        .checkpoints(PostgresCheckpointStore::new(pool))
        .clock(clock)
        .aggregate(&runners.orders)
        .aggregate(&runners.payments)
        .aggregate(&runners.inventory)
        .saga::<CheckoutSaga>()
}

/// Creates `topics` (from [`App::topics`](composable::host::App::topics)) on the broker, under
/// the bus's prefix; topics that exist are left as they are.
///
/// # Errors
/// When the broker refuses.
pub async fn create_topics(bus: &Bus, topics: &[String]) -> Result<(), Error> {
    let names: Vec<String> = topics.iter().map(|topic| bus.name(topic)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    bus.inner().create_topics(&names, PARTITIONS, 1).await?;
    Ok(())
}
