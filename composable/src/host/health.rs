//! Liveness and readiness of a running application: the two questions an orchestrator asks of
//! a process.
//!
//! * **Live**: no service has failed. A process that is not live cannot recover by itself (a
//!   service that fails has given up: its error is in the report), so an orchestrator restarts
//!   it.
//! * **Ready**: the process is not shutting down, and each of its services is ready:
//!   * a service reading the log (the relay, a saga's input, a projection) has caught up with
//!     the committed head at least once since it started, or stands by while another process
//!     holds the claim on its work (it takes over when that process dies);
//!   * a bus consumer (the command service, a projection fed from the bus) is subscribed and
//!     has handled what was waiting for it when it joined;
//!   * a saga's timers have made their first pass over the due timers.
//!
//!   Once ready, a service stays ready while it runs: falling behind under a burst of work is
//!   lag ([`Health::caught_up`], [`RunningApp::projections`](super::RunningApp::projections),
//!   the consumers' lag metrics), not a reason to take the process out of service. A service
//!   that ended by itself without an error (a projection whose newer version took its work over)
//!   holds nothing back.
//!
//! [`Probes`] answers both from the services' health, without waiting and without I/O; it is a
//! cheap clone that outlives the [`RunningApp`](super::RunningApp), so a probe endpoint keeps
//! answering (not ready) while the application shuts down.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use super::Role;
use crate::service::{Health, ServiceState};
use crate::stream::Position;

/// Answers liveness and readiness for the services of one
/// [`RunningApp`](super::RunningApp) ([`RunningApp::probes`](super::RunningApp::probes)): see
/// the [module docs](self) for what each means.
#[derive(Clone)]
pub struct Probes {
    services: Arc<[Probed]>,
    shutting_down: Arc<AtomicBool>,
}

/// One service, as the probes see it.
#[derive(Clone)]
pub(super) struct Probed {
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) health: watch::Receiver<Health>,
}

impl fmt::Debug for Probes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probes")
            .field("services", &self.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>())
            .field("shutting_down", &self.is_shutting_down())
            .finish()
    }
}

impl Probes {
    pub(super) fn new(services: Vec<Probed>, shutting_down: Arc<AtomicBool>) -> Self {
        Self { services: services.into(), shutting_down }
    }

    /// Whether the application has begun to shut down.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Every service's state now, and whether each is ready.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            shutting_down: self.is_shutting_down(),
            services: self
                .services
                .iter()
                .map(|service| ServiceReadiness {
                    name: service.name.clone(),
                    role: service.role.clone(),
                    state: ReadyState::of(&service.health),
                })
                .collect(),
        }
    }

    /// The services that failed, if any.
    pub fn liveness(&self) -> Liveness {
        Liveness {
            failed: self
                .services
                .iter()
                .filter_map(|service| match ReadyState::of(&service.health) {
                    ReadyState::Failed { reason } => Some(FailedService {
                        name: service.name.clone(),
                        role: service.role.clone(),
                        reason,
                    }),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// Whether a process is alive: it is unless a service failed ([`Probes::liveness`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    /// The services that failed, each with its error.
    pub failed: Vec<FailedService>,
}

impl Liveness {
    /// Whether no service failed.
    pub fn is_live(&self) -> bool {
        self.failed.is_empty()
    }
}

impl fmt::Display for Liveness {
    /// `live`, or `not live` and a line per failed service: the body of a liveness probe.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_live() { "live" } else { "not live" })?;
        for failed in &self.failed {
            write!(f, "\n{} ({}): failed: {}", failed.name, failed.role, failed.reason)?;
        }
        Ok(())
    }
}

/// A service that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedService {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its error.
    pub reason: String,
}

/// Whether a process is ready, and each service's state ([`Probes::readiness`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The application has begun to shut down: not ready, whatever its services say.
    pub shutting_down: bool,
    /// Every service, in the order they were registered.
    pub services: Vec<ServiceReadiness>,
}

impl Readiness {
    /// Whether the process is ready: not shutting down, and every service ready.
    pub fn is_ready(&self) -> bool {
        !self.shutting_down && self.services.iter().all(|service| service.state.is_ready())
    }

    /// The services that are not ready, with why.
    pub fn not_ready(&self) -> impl Iterator<Item = &ServiceReadiness> {
        self.services.iter().filter(|service| !service.state.is_ready())
    }
}

impl fmt::Display for Readiness {
    /// `ready`, `not ready` or `shutting down`, then a line per service with its state: the
    /// body of a readiness probe.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.shutting_down {
            "shutting down"
        } else if self.is_ready() {
            "ready"
        } else {
            "not ready"
        })?;
        for service in &self.services {
            write!(f, "\n{} ({}): {}", service.name, service.role, service.state)?;
        }
        Ok(())
    }
}

/// One service's readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceReadiness {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its state, and so whether it is ready ([`ReadyState::is_ready`]).
    pub state: ReadyState,
}

/// Where a service is, as readiness sees it: see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadyState {
    /// Ready: running, and it has caught up (or subscribed, or made its first pass) since it
    /// started.
    Ready,
    /// Ready: standing by while another process holds the claim on its work.
    Standby,
    /// Ended by itself without an error (a projection whose newer version took over): nothing
    /// to wait for, so it does not hold readiness back.
    Ended,
    /// Not ready: spawned, not running yet.
    Starting,
    /// Not ready: running, and not caught up yet since it started; how far it got in the log,
    /// when it reads the log.
    CatchingUp {
        /// Its position in the global log.
        position: Option<Position>,
    },
    /// Not ready: asked to stop, finishing what it holds.
    Stopping,
    /// Not ready, and not live: it failed, or its task ended without reporting (a panic, an
    /// abort).
    Failed {
        /// Its error.
        reason: String,
    },
}

impl ReadyState {
    /// The state of the service whose health `health` watches.
    fn of(health: &watch::Receiver<Health>) -> Self {
        let now = health.borrow().clone();
        // Closed: the task that reports is gone.
        let gone = health.has_changed().is_err();
        Self::from_health(&now, gone)
    }

    /// The state health `health` shows; `gone` when its task no longer runs.
    pub(super) fn from_health(health: &Health, gone: bool) -> Self {
        match &health.state {
            ServiceState::Failed(reason) => Self::Failed { reason: reason.clone() },
            ServiceState::Stopped => Self::Ended,
            _ if gone => Self::Failed {
                reason: "its task ended without reporting (it panicked or was aborted)".into(),
            },
            ServiceState::Starting => Self::Starting,
            ServiceState::Stopping => Self::Stopping,
            ServiceState::Running if health.standby => Self::Standby,
            ServiceState::Running if health.ready => Self::Ready,
            ServiceState::Running => Self::CatchingUp { position: health.position },
        }
    }

    /// Whether this state counts as ready.
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready | Self::Standby | Self::Ended)
    }
}

impl fmt::Display for ReadyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready => f.write_str("ready"),
            Self::Standby => f.write_str("standby"),
            Self::Ended => f.write_str("ended"),
            Self::Starting => f.write_str("starting"),
            Self::CatchingUp { position: Some(position) } => {
                write!(f, "catching up (at {position})")
            }
            Self::CatchingUp { position: None } => f.write_str("catching up"),
            Self::Stopping => f.write_str("stopping"),
            Self::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(state: ServiceState) -> Health {
        Health { state, caught_up: false, position: None, standby: false, ready: false }
    }

    #[test]
    fn a_running_service_is_ready_once_it_has_caught_up_or_stands_by() {
        let running = health(ServiceState::Running);
        assert_eq!(
            ReadyState::from_health(&running, false),
            ReadyState::CatchingUp { position: None }
        );
        let caught_up = Health { ready: true, caught_up: true, ..running.clone() };
        assert_eq!(ReadyState::from_health(&caught_up, false), ReadyState::Ready);
        // Behind again under load: still ready.
        let behind = Health { caught_up: false, ..caught_up };
        assert_eq!(ReadyState::from_health(&behind, false), ReadyState::Ready);
        let standby = Health { standby: true, ready: true, ..running };
        assert_eq!(ReadyState::from_health(&standby, false), ReadyState::Standby);
    }

    #[test]
    fn a_task_gone_without_reporting_has_failed() {
        let running = Health { ready: true, ..health(ServiceState::Running) };
        assert!(matches!(ReadyState::from_health(&running, true), ReadyState::Failed { .. }));
        let stopped = health(ServiceState::Stopped);
        assert_eq!(ReadyState::from_health(&stopped, true), ReadyState::Ended);
        assert!(!ReadyState::Stopping.is_ready());
        assert!(!ReadyState::Starting.is_ready());
    }
}
