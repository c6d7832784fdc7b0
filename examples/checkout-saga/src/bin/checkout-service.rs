//! The checkout's services as a process: runs the chosen roles of the application host (all by
//! default) on PostgreSQL and Kafka until SIGINT or SIGTERM, then stops them, each finishing what
//! it holds.
//!
//! ```sh
//! DATABASE_URL=postgres://… KAFKA_BROKERS=127.0.0.1:9092 \
//!     cargo run -p checkout-saga --bin checkout-service -- --role relay,commands
//! DATABASE_URL=… KAFKA_BROKERS=… cargo run -p checkout-saga --bin checkout-service -- --role checkout
//! ```
//!
//! Roles: `relay` (the outbox relay), `commands` (the command service hosting Order, Payment and
//! Inventory), `checkout` (the saga's input and timers), `board` (the board's projection into
//! the same database). Several processes of one role share the work: the command service
//! through the broker's consumer group; the relay, the saga's input and the board through a
//! claim in the database, so that one process does the work while the others
//! stand by, and one of them takes over within the claim's time (`CHECKOUT_CLAIM_TTL_MS`,
//! 10 s by default) when it dies. `CHECKOUT_TOPIC_PREFIX` prefixes every topic and consumer
//! group, so that runs sharing a broker don't meet. `CHECKOUT_METRICS_ADDR` (`127.0.0.1:9464`,
//! say) serves the process's metrics for Prometheus at `/metrics` (`docs/observability.md`
//! lists them). `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://127.0.0.1:4318`, say) exports its traces
//! with OTLP over HTTP as `OTEL_SERVICE_NAME` (`checkout-service` by default); the spans of one
//! checkout, in every process, are one trace.

use std::process::ExitCode;

use checkout_saga::telemetry::{OtlpConfig, Telemetry};
use checkout_saga::{Aggregates, hosted};
use composable::{BoxError as Error, SystemClock};
use composable_postgres::PostgresEventStore;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> ExitCode {
    let telemetry =
        match OtlpConfig::from_env("checkout-service").map(|config| Telemetry::install(&config)) {
            None => None,
            Some(Ok(telemetry)) => Some(telemetry),
            Some(Err(error)) => {
                eprintln!("checkout-service: {error}");
                return ExitCode::FAILURE;
            }
        };
    let mut code = match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("checkout-service: {error}");
            ExitCode::FAILURE
        }
    };
    // The spans still buffered go out before the process ends.
    if let Some(telemetry) = telemetry {
        match tokio::task::spawn_blocking(move || telemetry.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("checkout-service: {error}"),
            Err(error) => {
                eprintln!("checkout-service: flushing traces failed: {error}");
                code = ExitCode::FAILURE;
            }
        }
    }
    code
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
    hosted::migrate(&store).await?;
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
    let running = app.start();
    eprintln!("checkout-service: running {services:?}");

    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
        failed = running.failure() => eprintln!("checkout-service: {} failed; stopping", failed.name),
    }
    running.stop().await?;
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
                    "unknown argument `{arg}`; usage: [--role relay,commands,checkout,board]"
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
