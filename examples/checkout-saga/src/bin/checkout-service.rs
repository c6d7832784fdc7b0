//! The checkout's services as a process: runs the chosen roles of the application host (all by
//! default) on PostgreSQL and Kafka until SIGINT or SIGTERM, then shuts down gracefully: it
//! stops taking work, and each service finishes what it holds — the batch of the log or the
//! delivery in hand, its checkpoint saved only after it, its claim released — in the host's safe
//! order, within a grace period (`CHECKOUT_SHUTDOWN_GRACE_MS`, 20 s by default) after which
//! what still runs is aborted, reported, and the process exits with a failure. A service that
//! fails shuts the process down the same way. It exits 0 when every service stopped cleanly, and
//! when a signal comes while it is still starting.
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
//! 10 s by default) when it dies — at once when it shut down gracefully. `CHECKOUT_TOPIC_PREFIX`
//! prefixes every topic and consumer group, so that runs sharing a broker don't meet.
//! `CHECKOUT_METRICS_ADDR` (`127.0.0.1:9464`, say) serves the process's metrics for Prometheus
//! at `/metrics` (`docs/observability.md` lists them), histograms with the buckets of
//! `LATENCY_BUCKETS` below. `CHECKOUT_HEALTH_ADDR` (`0.0.0.0:8080`, say) serves the probes for
//! an orchestrator: `/health/live` (200 unless a service failed) and `/health/ready` (200 once
//! every service has caught up or stands by, 503 before and while it shuts down), each listing
//! the services and their states; `CHECKOUT_SHUTDOWN_GRACE_MS` bounds a graceful stop.
//! `CHECKOUT_DB_MAX_CONNECTIONS` sizes the PostgreSQL pool (10 by default). The process creates
//! the topics it uses when missing (`CHECKOUT_TOPIC_PARTITIONS`, 3, and
//! `CHECKOUT_TOPIC_REPLICATION`, 1), unless `CHECKOUT_CREATE_TOPICS=false`. The saga's commands
//! go through the circuit breaker `dispatch.checkout` (its default policy). Every other
//! `KAFKA_*` variable is a librdkafka property (`KAFKA_SECURITY_PROTOCOL`,
//! `KAFKA_SASL_MECHANISMS`, ...), so the broker can be Kafka, Redpanda, MSK or Event Hubs by
//! configuration alone. `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://127.0.0.1:4318`, say) exports the
//! process's traces with OTLP over HTTP as `OTEL_SERVICE_NAME` (`checkout-service` by default);
//! the spans of one checkout, in every process, are one trace. `RUST_LOG` filters what it logs
//! to standard error (`info` by default). `checkout_saga::settings` reads
//! all of them; `docs/deployment.md` describes each.

use std::process::ExitCode;
use std::time::Duration;

use checkout_saga::settings::Settings;
use checkout_saga::telemetry::Telemetry;
use checkout_saga::{Aggregates, hosted};
use composable::breaker::BreakerPolicy;
use composable::host::{HealthServer, RunningApp, Shutdown, shutdown_signal};
use composable::service::ServiceHandle;
use composable::{BoxError as Error, SystemClock, service};
use composable_postgres::PostgresEventStore;
use metrics_exporter_prometheus::PrometheusBuilder;

/// The upper bounds, in seconds, of the buckets every histogram is exported with (commands,
/// effects, projection batches, saga timers' lateness): Prometheus histograms rather than the
/// exporter's default summaries, so that quantiles can be taken over several processes.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("checkout-service: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve());
    // A blocking call still under way — reaching a broker that does not answer, when a signal
    // came during the start-up — does not hold the exit up.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// The process: its settings, logs and traces, and the services until they stop.
async fn serve() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("checkout-service: {error}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match Telemetry::install(&settings.log_filter, settings.otlp.as_ref()) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("checkout-service: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut code = match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("checkout-service: {error}");
            ExitCode::FAILURE
        }
    };
    // The spans still buffered go out before the process ends.
    match tokio::task::spawn_blocking(move || telemetry.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("checkout-service: {error}"),
        Err(error) => {
            eprintln!("checkout-service: flushing traces failed: {error}");
            code = ExitCode::FAILURE;
        }
    }
    code
}

async fn run(settings: Settings) -> Result<(), Error> {
    // The handlers go in first: SIGTERM while the process connects, migrates or creates its
    // topics stops it cleanly instead of killing it.
    let signal = shutdown_signal()?;
    tokio::pin!(signal);
    let Started { running, probes, services } = tokio::select! {
        started = start(&settings) => started?,
        signal = &mut signal => {
            eprintln!("checkout-service: {signal:?} while starting; stopped before running");
            return Ok(());
        }
    };
    eprintln!("checkout-service: running {services:?}");

    // Until SIGINT, SIGTERM or a failure; then every service stopped, within the grace period.
    let mut shutdown = Shutdown::new();
    if let Some(grace) = settings.shutdown_grace {
        shutdown = shutdown.grace(grace);
    }
    let signal = async {
        let signal = signal.await;
        tracing::info!(?signal, "shutting down");
    };
    let report = running.until(signal, &shutdown).await;
    eprintln!("checkout-service: {report}");
    // The probes answered "shutting down" until now. Metrics are scraped, so nothing is left to
    // flush; the traces' exporter is flushed by `main` once this returns.
    if let Some(probes) = probes {
        probes.stop().await?;
    }
    report.into_result()?;
    Ok(())
}

/// What [`start`] started.
struct Started {
    running: RunningApp<PostgresEventStore>,
    /// The probes' server, when the settings ask for one.
    probes: Option<ServiceHandle>,
    /// The names of the services running.
    services: Vec<String>,
}

/// Connects to PostgreSQL and the broker, migrates, creates the topics, and starts the roles
/// asked for, serving metrics and probes as the settings say.
async fn start(settings: &Settings) -> Result<Started, Error> {
    let roles = roles()?;
    if let Some(address) = settings.metrics_addr {
        PrometheusBuilder::new()
            .with_http_listener(address)
            .set_buckets(LATENCY_BUCKETS)?
            .install()
            .map_err(|error| format!("cannot serve metrics on {address}: {error}"))?;
        composable::metrics::describe();
    }
    let store = PostgresEventStore::builder()
        .url(settings.database_url())?
        .max_connections(settings.db_max_connections)
        .connect()
        .await?;
    hosted::migrate(&store).await?;
    let kafka = hosted::kafka_config(settings.kafka.brokers()).with_env(&settings.kafka);
    let bus = hosted::connect_bus(kafka, &settings.topic_prefix).await?;

    let runners = Aggregates::new(&store, &SystemClock);
    // While the command service does not answer, the saga's dispatches fail at once and its
    // input backs off, instead of each waiting out the reply timeout.
    let mut app =
        hosted::app(&store, &bus, &runners, SystemClock).dispatch_breaker(BreakerPolicy::default());
    if let Some(ttl) = settings.claim_ttl {
        app = app.claim_ttl(ttl);
    }
    if let Some(roles) = roles {
        app = app.roles(roles);
    }
    let app = app.build()?;
    if settings.create_topics {
        let names: Vec<String> = app.topics().iter().map(|topic| bus.name(topic)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (partitions, replication) = (settings.topic_partitions, settings.topic_replication);
        bus.inner().create_topics(&names, partitions, replication).await?;
    }
    let services: Vec<String> = app.services().into_iter().map(|(name, _)| name).collect();
    let running = app.start();
    let probes = match settings.health_addr {
        Some(address) => Some(service::spawn(HealthServer::bind(address, running.probes()).await?)),
        None => None,
    };
    Ok(Started { running, probes, services })
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
