//! The lifecycle of every long-running part: start, run until asked to stop, finish the work in
//! hand, stop — and report a failure instead of swallowing it.
//!
//! A [`Service`] is a value that runs until its [`ServiceContext`] says to stop. [`spawn`] runs
//! it as a task and hands back a [`ServiceHandle`], the one way to stop it, wait for it, and see
//! its [`Health`]: whether it is running, failed or stopped, and — for a consumer of the log —
//! whether it has caught up with the committed head. The relay, a saga's inputs and timers, the
//! command service and the projection runners are all services; the
//! [consumers](crate::consumer) are how most of them are built.
//!
//! ```
//! use composable::service::{self, Service, ServiceContext, ServiceState};
//! use composable::BoxError;
//!
//! /// Counts until it is asked to stop.
//! struct Ticker;
//!
//! impl Service for Ticker {
//!     fn name(&self) -> String { "ticker".into() }
//!
//!     async fn run(self, mut context: ServiceContext) -> Result<(), BoxError> {
//!         context.caught_up(None);
//!         context.stopped().await;
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let mut handle = service::spawn(Ticker);
//! handle.wait_until(|health| health.caught_up).await;
//! assert_eq!(handle.health().state, ServiceState::Running);
//! handle.stop().await?;
//! # Ok::<(), composable::service::ServiceError>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::BoxError;
use crate::clock::Clock;
use crate::stream::Position;

/// Where a service is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    /// Spawned, not yet running.
    Starting,
    /// Running.
    Running,
    /// Asked to stop, finishing the work in hand.
    Stopping,
    /// Ended without an error.
    Stopped,
    /// Ended with this error (its handle's [`stop`](ServiceHandle::stop) or
    /// [`join`](ServiceHandle::join) returns it).
    Failed(String),
}

/// What a service reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Where it is in its life.
    pub state: ServiceState,
    /// Whether it has handled everything there was when it last looked (for a consumer of the
    /// log: everything committed up to the head).
    pub caught_up: bool,
    /// How far it got in the global log, for services that read it.
    pub position: Option<Position>,
    /// Waiting while another process holds the claim on its work (a log consumer run in several
    /// processes): the work is done there, and this one takes over when that claim lapses.
    pub standby: bool,
    /// Whether it has caught up at least once since it started, or stood by for another
    /// process's claim: once true it stays true while the service runs (falling behind under a
    /// burst of work is lag, not a reason to stop being ready). What the host's readiness reads
    /// ([`Readiness`](crate::host::Readiness)).
    pub ready: bool,
}

impl Health {
    /// Whether the service has ended, stopped or failed.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, ServiceState::Stopped | ServiceState::Failed(_))
    }
}

/// A long-running part of an application. See the [module docs](self).
///
/// `run` returns when the context says to stop ([`ServiceContext::stopped`]) after finishing or
/// handing back what it holds — a delivery it received and did not handle is left
/// unacknowledged, so the bus delivers it again — or with the first error it cannot get past.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a service",
    note = "implement `composable::service::Service` (a name and an async `run`), or use one of \
            the consumers in `composable::consumer`"
)]
pub trait Service: Send + 'static {
    /// The name the service is known by in health reports and logs.
    fn name(&self) -> String;

    /// Runs until `context` asks it to stop, or until it fails.
    fn run(self, context: ServiceContext) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// What a running service is given: the stop signal, and where to report its health.
#[derive(Debug)]
pub struct ServiceContext {
    stop: watch::Receiver<bool>,
    health: watch::Sender<Health>,
}

impl ServiceContext {
    /// Whether the service has been asked to stop (or its handle was dropped).
    pub fn stop_requested(&self) -> bool {
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }

    /// Completes once the service is asked to stop, or its handle is dropped. Cancel-safe: use
    /// it in a `select!` beside the service's work.
    pub async fn stopped(&mut self) {
        // An error means the handle is gone: nobody can stop the service any more, so it stops.
        let _ = self.stop.wait_for(|stop| *stop).await;
        self.health.send_if_modified(|health| {
            let running = health.state == ServiceState::Running;
            if running {
                health.state = ServiceState::Stopping;
            }
            running
        });
    }

    /// Reports whether the service has caught up, and how far it got in the log.
    pub fn caught_up(&self, position: Option<Position>) {
        self.report(true, position);
    }

    /// Reports that the service is behind (catching up), and how far it got in the log.
    pub fn behind(&self, position: Option<Position>) {
        self.report(false, position);
    }

    /// Reports that another process holds the claim on this service's work, so it waits.
    pub fn standby(&self) {
        self.health.send_if_modified(|health| {
            let new = Health { standby: true, caught_up: false, ready: true, ..health.clone() };
            let changed = *health != new;
            *health = new;
            changed
        });
    }

    fn report(&self, caught_up: bool, position: Option<Position>) {
        self.health.send_if_modified(|health| {
            let new = Health {
                caught_up,
                standby: false,
                ready: health.ready || caught_up,
                position: position.or(health.position),
                ..health.clone()
            };
            let changed = *health != new;
            *health = new;
            changed
        });
    }

    /// A context whose stop signal is `stop`, reporting to nobody: for running a service
    /// inline, under a caller's own lifecycle.
    pub fn detached(stop: watch::Receiver<bool>) -> Self {
        let (health, _) = watch::channel(Health {
            state: ServiceState::Running,
            caught_up: false,
            position: None,
            standby: false,
            ready: false,
        });
        Self { stop, health }
    }
}

/// A service ended with an error, or its task did not end normally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// `run` returned this error.
    #[error("service `{service}` failed: {source}")]
    Failed {
        /// The service's name.
        service: String,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// The service's task panicked or was cancelled.
    #[error("service `{service}` ended abnormally: {source}")]
    Aborted {
        /// The service's name.
        service: String,
        /// What the runtime said.
        #[source]
        source: tokio::task::JoinError,
    },
    /// It was still running `grace` after it was asked to stop, so its task was aborted
    /// ([`ServiceHandle::stop_within`]).
    #[error("service `{service}` did not stop within {grace:?}, so it was aborted")]
    Overran {
        /// The service's name.
        service: String,
        /// How long it was given.
        grace: Duration,
    },
}

/// A spawned [`Service`]: stop it, wait for it, read its health. Dropping the handle asks the
/// service to stop (it is never left running with nobody able to stop it).
pub struct ServiceHandle {
    name: String,
    stop: watch::Sender<bool>,
    health: watch::Receiver<Health>,
    task: JoinHandle<Result<(), BoxError>>,
}

impl fmt::Debug for ServiceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("name", &self.name)
            .field("health", &*self.health.borrow())
            .finish_non_exhaustive()
    }
}

/// Runs `service` as a Tokio task.
pub fn spawn<S: Service>(service: S) -> ServiceHandle {
    let name = service.name();
    let (stop, stop_rx) = watch::channel(false);
    let (health_tx, health) = watch::channel(Health {
        state: ServiceState::Starting,
        caught_up: false,
        position: None,
        standby: false,
        ready: false,
    });
    let task = tokio::spawn({
        let name = name.clone();
        let health_tx = health_tx.clone();
        async move {
            health_tx.send_modify(|health| health.state = ServiceState::Running);
            let context = ServiceContext { stop: stop_rx, health: health_tx.clone() };
            let outcome = match AssertUnwindSafe(service.run(context)).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(panic) => {
                    // Shown in the health (so liveness sees it), then the task ends as it would
                    // have: `join` reports the panic.
                    let message = panic_message(panic.as_ref());
                    health_tx.send_modify(|health| {
                        health.state = ServiceState::Failed(format!("panicked: {message}"));
                    });
                    tracing::error!(service = %name, panic = %message, "service panicked");
                    std::panic::resume_unwind(panic);
                }
            };
            health_tx.send_modify(|health| {
                health.state = match &outcome {
                    Ok(()) => ServiceState::Stopped,
                    Err(error) => ServiceState::Failed(error.to_string()),
                };
            });
            if let Err(error) = &outcome {
                tracing::error!(service = %name, %error, "service failed");
            }
            outcome
        }
    });
    ServiceHandle { name, stop, health, task }
}

impl ServiceHandle {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its health now.
    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    /// A receiver of its health, told of every change.
    pub fn watch_health(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// Waits until its health satisfies `condition` or it has ended; returns the health then.
    pub async fn wait_until(&mut self, condition: impl Fn(&Health) -> bool) -> Health {
        let waited = self
            .health
            .wait_for(|health| condition(health) || health.is_finished())
            .await
            .map(|health| health.clone());
        // An error: the task is gone and cannot report any more, so what it last said stands.
        waited.unwrap_or_else(|_| self.health())
    }

    /// Whether it has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks it to stop without waiting.
    pub fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    /// Asks it to stop and waits until it has.
    ///
    /// # Errors
    /// The error it failed with, now or before, or how its task ended abnormally.
    pub async fn stop(self) -> Result<(), ServiceError> {
        self.stop.send_replace(true);
        self.join().await
    }

    /// Asks it to stop and waits until it has, for at most `grace` on `clock`; a service still
    /// running then has its task aborted — cancelled where it waits, as a crash would end it:
    /// what it did not finish is not acknowledged, so it is done again (delivered again, read
    /// again after the checkpoint), and a claim it held lapses after its ttl. Never waits longer
    /// than `grace`: a task stuck without ever yielding cannot be cancelled, and is left to end
    /// with the runtime.
    ///
    /// # Errors
    /// As [`stop`](Self::stop); [`ServiceError::Overran`] when it was aborted.
    pub async fn stop_within(
        mut self,
        grace: Duration,
        clock: &dyn Clock,
    ) -> Result<(), ServiceError> {
        self.stop.send_replace(true);
        let ended = tokio::select! {
            biased;
            ended = &mut self.task => Some(ended),
            () = clock.sleep(grace) => None,
        };
        let name = std::mem::take(&mut self.name);
        match ended {
            Some(ended) => outcome(name, ended),
            None => {
                self.task.abort();
                tracing::warn!(service = %name, ?grace, "the service did not stop in time; aborted");
                Err(ServiceError::Overran { service: name, grace })
            }
        }
    }

    /// Waits until it ends by itself (or is stopped through another path).
    ///
    /// # Errors
    /// The error it failed with, or how its task ended abnormally.
    pub async fn join(mut self) -> Result<(), ServiceError> {
        let name = std::mem::take(&mut self.name);
        let ended = (&mut self.task).await;
        outcome(name, ended)
    }
}

/// What a service's task ended with, as the handle reports it.
fn outcome(
    name: String,
    ended: Result<Result<(), BoxError>, tokio::task::JoinError>,
) -> Result<(), ServiceError> {
    match ended {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(ServiceError::Failed { service: name, source }),
        Err(source) => Err(ServiceError::Aborted { service: name, source }),
    }
}

/// The message a panic carried, when it is text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

impl Drop for ServiceHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing;

    impl Service for Failing {
        fn name(&self) -> String {
            "failing".into()
        }

        async fn run(self, _: ServiceContext) -> Result<(), BoxError> {
            Err("the broker refused the topic".into())
        }
    }

    struct UntilStopped(tokio::sync::mpsc::Sender<&'static str>);

    impl Service for UntilStopped {
        fn name(&self) -> String {
            "until-stopped".into()
        }

        async fn run(self, mut context: ServiceContext) -> Result<(), BoxError> {
            context.behind(Some(Position::new(1, 1)));
            context.stopped().await;
            assert!(context.stop_requested());
            self.0.send("finished its work").await?;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failure_is_reported_by_health_and_by_stop() {
        let mut handle = spawn(Failing);
        let health = handle.wait_until(|_| false).await;
        assert_eq!(health.state, ServiceState::Failed("the broker refused the topic".into()));
        let error = handle.stop().await.unwrap_err();
        assert!(matches!(&error, ServiceError::Failed { service, .. } if service == "failing"));
        assert_eq!(error.to_string(), "service `failing` failed: the broker refused the topic");
    }

    #[tokio::test]
    async fn stop_lets_the_service_finish_and_reports_stopped() {
        let (sender, mut finished) = tokio::sync::mpsc::channel(1);
        let mut handle = spawn(UntilStopped(sender));
        let health = handle.wait_until(|health| health.position.is_some()).await;
        assert_eq!(health.state, ServiceState::Running);
        assert!(!health.caught_up);
        let watch = handle.watch_health();
        handle.stop().await.unwrap();
        assert_eq!(finished.recv().await, Some("finished its work"));
        assert_eq!(watch.borrow().state, ServiceState::Stopped);
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_service() {
        let (sender, mut finished) = tokio::sync::mpsc::channel(1);
        let handle = spawn(UntilStopped(sender));
        drop(handle);
        let done = tokio::time::timeout(Duration::from_secs(5), finished.recv()).await;
        assert_eq!(done.unwrap(), Some("finished its work"));
    }
}
