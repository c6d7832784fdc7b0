//! The checkout's services as a process: runs the chosen roles of the application host (all by
//! default) on PostgreSQL and Kafka until SIGINT or SIGTERM, then shuts down gracefully: it
//! stops taking work, and each service finishes what it holds — the batch of the log or the
//! delivery in hand, its checkpoint saved only after it, its claim released — in the host's safe
//! order, within a grace period (`CHECKOUT_SHUTDOWN_GRACE_MS`, 20 s by default) after which
//! what still runs is aborted, reported, and the process exits with a failure. A service that
//! fails shuts the process down the same way. It exits 0 when every service stopped cleanly.
//!
//! ```sh
//! DATABASE_URL=postgres://… KAFKA_BROKERS=127.0.0.1:9092 \
//!     cargo run -p checkout-saga --bin checkout-service -- --role relay,commands
//! DATABASE_URL=… KAFKA_BROKERS=… cargo run -p checkout-saga --bin checkout-service -- --role checkout
//! ```
//!
//! Roles: `relay` (the outbox relay), `commands` (the command service hosting Order, Payment and
//! Inventory), `checkout` (the saga's input and timers). Several processes of one role share
//! the work: the command service through the broker's consumer group; the relay and the saga's
//! input through a claim in the database, so that one process does the work while the others
//! stand by, and one of them takes over within the claim's time (`CHECKOUT_CLAIM_TTL_MS`,
//! 10 s by default) when it dies — at once when it shut down gracefully. `CHECKOUT_TOPIC_PREFIX`
//! prefixes every topic and consumer group, so that runs sharing a broker don't meet.
//! `CHECKOUT_METRICS_ADDR` (`127.0.0.1:9464`, say) serves the process's metrics for Prometheus at
//! `/metrics` (`docs/observability.md` lists them). `CHECKOUT_HEALTH_ADDR` (`0.0.0.0:8080`, say)
//! serves the probes for an orchestrator: `/health/live` (200 unless a service failed) and
//! `/health/ready` (200 once every service has caught up or stands by, 503 before and while it
//! shuts down), each listing the services and their states.

use std::process::ExitCode;

use std::time::Duration;

use checkout_saga::{Aggregates, hosted};
use composable::host::{HealthServer, Shutdown};
use composable::{BoxError as Error, SystemClock, service};
use composable_postgres::PostgresEventStore;
use metrics_exporter_prometheus::PrometheusBuilder;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("checkout-service: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let roles = roles()?;
    if let Ok(address) = std::env::var("CHECKOUT_METRICS_ADDR") {
        let address: std::net::SocketAddr = address
            .parse()
            .map_err(|_| format!("CHECKOUT_METRICS_ADDR `{address}` is not an address:port"))?;
        PrometheusBuilder::new()
            .with_http_listener(address)
            .install()
            .map_err(|error| format!("cannot serve metrics on {address}: {error}"))?;
        composable::metrics::describe();
    }
    let database_url = env("DATABASE_URL")?;
    let brokers = env("KAFKA_BROKERS")?;
    let store = PostgresEventStore::connect(&database_url).await?;
    store.migrate().await?;
    let prefix = std::env::var("CHECKOUT_TOPIC_PREFIX").unwrap_or_default();
    let bus = hosted::connect_bus(&brokers, &prefix).await?;

    let runners = Aggregates::new(&store, &SystemClock);
    let mut app = hosted::app(&store, &bus, &runners, SystemClock);
    if let Ok(ttl) = std::env::var("CHECKOUT_CLAIM_TTL_MS") {
        let ttl: u64 = ttl
            .parse()
            .map_err(|_| format!("CHECKOUT_CLAIM_TTL_MS `{ttl}` is not milliseconds"))?;
        app = app.claim_ttl(std::time::Duration::from_millis(ttl));
    }
    if let Some(roles) = roles {
        app = app.roles(roles);
    }
    let app = app.build()?;
    hosted::create_topics(&bus, app.topics()).await?;
    let services: Vec<String> = app.services().into_iter().map(|(name, _)| name).collect();
    let mut shutdown = Shutdown::new();
    if let Ok(grace) = std::env::var("CHECKOUT_SHUTDOWN_GRACE_MS") {
        let grace: u64 = grace
            .parse()
            .map_err(|_| format!("CHECKOUT_SHUTDOWN_GRACE_MS `{grace}` is not milliseconds"))?;
        shutdown = shutdown.grace(Duration::from_millis(grace));
    }
    let running = app.start();
    let probes = match std::env::var("CHECKOUT_HEALTH_ADDR") {
        Ok(address) => {
            let address: std::net::SocketAddr = address
                .parse()
                .map_err(|_| format!("CHECKOUT_HEALTH_ADDR `{address}` is not an address:port"))?;
            Some(service::spawn(HealthServer::bind(address, running.probes()).await?))
        }
        Err(_) => None,
    };
    eprintln!("checkout-service: running {services:?}");

    // Until SIGINT, SIGTERM or a failure; then every service stopped, within the grace period.
    let report = running.run_until_shutdown(&shutdown).await?;
    eprintln!("checkout-service: {report}");
    // The probes answered "shutting down" until now. Metrics are scraped, so nothing is left to
    // flush; a process exporting traces would flush its exporter here.
    if let Some(probes) = probes {
        probes.stop().await?;
    }
    report.into_result()?;
    Ok(())
}

/// `--role a,b` (or `--role=a,b`); every role when absent.
fn roles() -> Result<Option<Vec<String>>, Error> {
    let mut args = std::env::args().skip(1);
    let mut roles = None;
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--role=") {
            Some(value) => value.to_owned(),
            None if arg == "--role" => args.next().ok_or("--role needs a value")?,
            None => {
                return Err(format!(
                    "unknown argument `{arg}`; usage: [--role relay,commands,checkout]"
                )
                .into());
            }
        };
        roles = Some(
            value
                .split(',')
                .map(str::trim)
                .filter(|role| !role.is_empty())
                .map(str::to_owned)
                .collect(),
        );
    }
    Ok(roles)
}

fn env(name: &str) -> Result<String, Error> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .ok_or_else(|| format!("{name} is not set").into())
}
