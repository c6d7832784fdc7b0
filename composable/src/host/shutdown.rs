//! Graceful shutdown: run until a signal (or a failure), then stop every service in the safe
//! order within a bounded grace period.
//!
//! [`RunningApp::until`](super::RunningApp::until) waits for any future — or
//! [`RunningApp::run_until_shutdown`](super::RunningApp::run_until_shutdown) for SIGINT or
//! SIGTERM ([`shutdown_signal`]) — or for a service to fail, whichever comes first. Then:
//!
//! 1. the [probes](super::Probes) report the process not ready (it is shutting down);
//! 2. each service is asked to stop, one after another, sagas before the command service that
//!    answers them and the command service before the relay, so that no service waits on one
//!    already stopped. Each stops taking work and finishes what it holds: a consumer of the
//!    log handles the batch in hand and saves its checkpoint after it — never past what was
//!    handled — and releases its claim; a bus consumer finishes the delivery in hand and
//!    acknowledges it, and leaves what it had not taken unacknowledged for the next member of
//!    its group; a saga's timers finish the pass in hand;
//! 3. this ordered phase has nine tenths of the [grace period](Shutdown::grace). When a service
//!    is still running at its end it is aborted, and every service not stopped yet is asked to
//!    stop at once and has the last tenth; what still runs then is aborted too. An aborted
//!    service ends as a crash would: what it did not finish is done again — read again after
//!    its checkpoint, delivered again by the bus — and its claim lapses after its ttl.
//!
//! It never waits longer than the grace period, and the [`ShutdownReport`] names each service
//! and how it ended. When it returns, every service has ended (or, if aborted, been cancelled):
//! flush what the process exports — traces, metrics — then, and exit.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{RunError, RunningApp, ServiceStatus};
use crate::clock::{Clock, SystemClock};
use crate::event_store::EventStore;
use crate::host::Role;
use crate::service::ServiceError;

/// How an application shuts down: its grace period, and the clock that measures it. See the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct Shutdown {
    grace: Duration,
    clock: Arc<dyn Clock>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A grace period of 20 s, on the system clock: within Kubernetes' default of 30 s between
    /// SIGTERM and SIGKILL.
    pub fn new() -> Self {
        Self { grace: Duration::from_secs(20), clock: Arc::new(SystemClock) }
    }

    /// How long stopping every service may take in all; what still runs then is aborted.
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Measures the grace period on `clock` (the system clock by default): like the services'
    /// waits on I/O, it is real time, not the application's; a test may step it with a
    /// `TestClock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The grace period.
    pub fn grace_period(&self) -> Duration {
        self.grace
    }
}

/// Why the application shut down.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownCause {
    /// The future it ran until completed (a signal, for
    /// [`run_until_shutdown`](super::RunningApp::run_until_shutdown)).
    Requested,
    /// A service failed, so the others were stopped.
    Failed(ServiceStatus),
}

/// How one service ended in a shutdown.
#[derive(Debug)]
pub struct StoppedService {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// `Ok` when it stopped cleanly; its error when it had failed; [`ServiceError::Overran`]
    /// when it was still running at the end of its time and was aborted.
    pub outcome: Result<(), ServiceError>,
}

impl StoppedService {
    /// Whether it was aborted after its time ran out.
    pub fn was_aborted(&self) -> bool {
        matches!(self.outcome, Err(ServiceError::Overran { .. }))
    }
}

/// What a shutdown did: why, how each service ended (in the order they were stopped), and how
/// long it took by the shutdown's clock.
#[derive(Debug)]
pub struct ShutdownReport {
    /// Why it shut down.
    pub cause: ShutdownCause,
    /// Each service, in the order it was stopped.
    pub services: Vec<StoppedService>,
    /// How long stopping took.
    pub took: Duration,
}

impl ShutdownReport {
    /// Whether it shut down on request and every service stopped cleanly.
    pub fn is_clean(&self) -> bool {
        self.cause == ShutdownCause::Requested
            && self.services.iter().all(|service| service.outcome.is_ok())
    }

    /// The services that were aborted.
    pub fn aborted(&self) -> impl Iterator<Item = &StoppedService> {
        self.services.iter().filter(|service| service.was_aborted())
    }

    /// `Ok` when every service stopped cleanly (whatever the cause).
    ///
    /// # Errors
    /// [`RunError::Failed`] with every service that failed or was aborted.
    pub fn into_result(self) -> Result<(), RunError> {
        let failures: Vec<ServiceError> =
            self.services.into_iter().filter_map(|service| service.outcome.err()).collect();
        if failures.is_empty() { Ok(()) } else { Err(RunError::Failed(failures)) }
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            ShutdownCause::Requested => write!(f, "shut down on request in {:?}", self.took)?,
            ShutdownCause::Failed(status) => {
                write!(f, "shut down in {:?} after `{}` failed", self.took, status.name)?;
            }
        }
        for service in &self.services {
            match &service.outcome {
                Ok(()) => write!(f, "; {} stopped", service.name)?,
                Err(error) => write!(f, "; {error}")?,
            }
        }
        Ok(())
    }
}

/// Which signal asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (what an orchestrator sends; unix only).
    Terminate,
}

/// A future that completes when the process receives SIGINT or SIGTERM (on other platforms,
/// Ctrl-C). The handlers are installed when this is called, so a signal that arrives before the
/// future is first awaited is not missed; from then on those signals no longer end the process
/// by themselves.
///
/// # Errors
/// The signal handlers could not be installed.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = Signal> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => Signal::Interrupt,
                _ = terminate.recv() => Signal::Terminate,
            }
        })
    }
    #[cfg(not(unix))]
    {
        let mut interrupt = tokio::signal::windows::ctrl_c()?;
        Ok(async move {
            interrupt.recv().await;
            Signal::Interrupt
        })
    }
}

impl<S: EventStore> RunningApp<S> {
    /// Runs until `signal` completes or a service fails, then shuts down as `shutdown` says
    /// (see the [module docs](self)): the report says why and how each service ended. Flush
    /// what the process exports (traces, metrics) once it returns.
    ///
    /// ```
    /// # use composable::{aggregate, apply, command, event};
    /// # use serde::{Deserialize, Serialize};
    /// # #[event(name = "order.placed", version = 1)]
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Placed;
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Place;
    /// # #[derive(Debug, Default)] pub struct Order;
    /// # #[aggregate(stream = "order")]
    /// # impl Order {
    /// #     #[command] fn place(&self, _c: Place) -> Placed { Placed }
    /// #     #[apply] fn placed(&mut self, _e: &Placed) {}
    /// # }
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use composable::bus::InMemoryBus;
    /// use composable::host::{App, Shutdown};
    /// use composable::{AggregateRunner, InMemoryEventStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = InMemoryEventStore::new();
    /// let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
    /// let running = App::on_bus("shop", store.clone(), InMemoryBus::new())
    ///     .aggregate(&orders)
    ///     .build()?
    ///     .start();
    /// // In a binary: `running.run_until_shutdown(&Shutdown::new())`, on SIGINT or SIGTERM.
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// stop.send(()).ok();
    /// let report = running.until(stopped, &Shutdown::new().grace(Duration::from_secs(5))).await;
    /// assert!(report.is_clean(), "{report}");
    /// // Flush the tracer and the metrics exporter here, then exit.
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn until<F: Future>(self, signal: F, shutdown: &Shutdown) -> ShutdownReport {
        let cause = tokio::select! {
            biased;
            failed = self.failure() => ShutdownCause::Failed(failed),
            _ = signal => ShutdownCause::Requested,
        };
        if let ShutdownCause::Failed(status) = &cause {
            tracing::error!(service = %status.name, "a service failed; shutting down");
        }
        self.shut_down(cause, shutdown).await
    }

    /// Runs until SIGINT or SIGTERM ([`shutdown_signal`]) or a service fails, then shuts
    /// down: [`until`](Self::until) with the signals.
    ///
    /// # Errors
    /// The signal handlers could not be installed (nothing was stopped then).
    pub async fn run_until_shutdown(
        self,
        shutdown: &Shutdown,
    ) -> Result<ShutdownReport, std::io::Error> {
        let signal = shutdown_signal()?;
        let signal = async {
            let signal = signal.await;
            tracing::info!(?signal, "shutting down");
        };
        Ok(self.until(signal, shutdown).await)
    }

    /// Stops every service now, within `shutdown`'s grace period: see the
    /// [module docs](self).
    pub async fn shut_down(self, cause: ShutdownCause, shutdown: &Shutdown) -> ShutdownReport {
        self.shutting_down.store(true, Ordering::Release);
        let clock = &*shutdown.clock;
        let started = clock.now();
        let grace = shutdown.grace;
        let ordered = grace.saturating_sub(grace / 10);
        let left = |budget: Duration| {
            let spent = (clock.now() - started).to_std().unwrap_or_default();
            budget.saturating_sub(spent)
        };
        let mut report = Vec::new();
        let mut services = self.services.into_iter().rev().peekable();
        // In order, while the ordered phase lasts.
        while let Some(service) = services.next_if(|_| !left(ordered).is_zero()) {
            let outcome = service.handle.stop_within(left(ordered), clock).await;
            let overran = matches!(outcome, Err(ServiceError::Overran { .. }));
            report.push(StoppedService { name: service.name, role: service.role, outcome });
            if overran {
                break;
            }
        }
        // The rest at once, in what is left.
        let rest: Vec<_> = services.collect();
        for service in &rest {
            service.handle.request_stop();
        }
        for service in rest {
            let outcome = service.handle.stop_within(left(grace), clock).await;
            report.push(StoppedService { name: service.name, role: service.role, outcome });
        }
        let took = (clock.now() - started).to_std().unwrap_or_default();
        let report = ShutdownReport { cause, services: report, took };
        if report.aborted().next().is_some() {
            tracing::warn!(%report, "shut down, aborting what did not stop in time");
        } else {
            tracing::info!(%report, "shut down");
        }
        report
    }
}
