//! Durable timers: a saga step's timeout, persisted so that it fires after a restart.
//!
//! The [`SagaRunner`](super::SagaRunner) schedules a [`Timer`] when a step with a timeout has
//! dispatched its commands, cancels it when the next event arrives first, and asks the
//! [`TimerStore`] for due timers on its clock. Claiming a timer leases it for a while, so two
//! runners don't fire it together; a claimed timer that is never completed (the process died)
//! is offered again once the lease runs out. Firing is idempotent — the saga records the timer's
//! id — so a timer fired twice across a crash takes effect once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::BoxError;

/// A scheduled timeout of one saga instance's step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Unique id, recorded by the saga when the timer is armed and when it fires.
    pub id: Uuid,
    /// The saga's name.
    pub saga: String,
    /// The instance's correlation key.
    pub key: String,
    /// The step whose timeout this is.
    pub step: String,
    /// The flow the instance belongs to.
    pub correlation_id: Uuid,
    /// When it falls due.
    pub due_at: DateTime<Utc>,
}

/// A timer store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimerError {
    /// The backend could not be reached; the operation may succeed when retried.
    #[error("timer store unavailable while trying to {operation}: {source}")]
    Unavailable {
        /// What was being done.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The backend failed in a way retrying will not fix.
    #[error("timer store failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// A stored timer could not be read back.
    #[error("corrupt timer {id}: {reason}")]
    Corrupt {
        /// The timer's id.
        id: Uuid,
        /// What is wrong with it.
        reason: String,
    },
}

/// Durable storage of saga timers.
///
/// Semantics every implementation keeps:
/// * `schedule` of an id already stored changes nothing;
/// * `claim_due` returns up to `limit` timers of saga `saga` due at `now`, neither completed nor
///   claimed by a lease still running, in due order, and leases them until `now + lease`;
/// * `complete` marks a timer fired for good, `cancel` removes it; both ignore unknown ids.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a timer store",
    note = "a saga's timeouts need a timer store: give the application one with `.timers(store)` (for example `InMemoryTimerStore::new()`, or `PostgresTimerStore`) before `.saga::<G>()`"
)]
pub trait TimerStore: Send + Sync + 'static {
    /// Stores `timer`.
    fn schedule(&self, timer: Timer) -> impl Future<Output = Result<(), TimerError>> + Send;

    /// Removes timer `id`: its step finished in time.
    fn cancel(&self, id: Uuid) -> impl Future<Output = Result<(), TimerError>> + Send;

    /// Claims the due timers of `saga`.
    fn claim_due(
        &self,
        saga: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Timer>, TimerError>> + Send;

    /// Marks timer `id` fired: it is never offered again.
    fn complete(&self, id: Uuid) -> impl Future<Output = Result<(), TimerError>> + Send;
}

impl<T: TimerStore> TimerStore for Arc<T> {
    fn schedule(&self, timer: Timer) -> impl Future<Output = Result<(), TimerError>> + Send {
        (**self).schedule(timer)
    }
    fn cancel(&self, id: Uuid) -> impl Future<Output = Result<(), TimerError>> + Send {
        (**self).cancel(id)
    }
    fn claim_due(
        &self,
        saga: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Timer>, TimerError>> + Send {
        (**self).claim_due(saga, now, lease, limit)
    }
    fn complete(&self, id: Uuid) -> impl Future<Output = Result<(), TimerError>> + Send {
        (**self).complete(id)
    }
}

mod memory;

pub use memory::InMemoryTimerStore;
