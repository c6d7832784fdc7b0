//! What a saga runner reports: where an instance stands and what one input did to it.

use uuid::Uuid;

use crate::dispatch::Dispatch;
use crate::stream::Version;

/// Where a saga instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SagaStatus {
    /// Waiting for its next event.
    #[default]
    Running,
    /// An `end` step ran.
    Completed,
    /// A step failed or timed out, and the completed steps' compensations were dispatched.
    Compensated,
}

/// What one input did to a saga instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The instance's correlation key.
    pub key: String,
    /// The step that ran, or whose timeout fired.
    pub step: &'static str,
    /// Whether this was the step's timeout rather than its event.
    pub timed_out: bool,
    /// The commands dispatched and accepted, in order.
    pub dispatched: Vec<Dispatch>,
    /// Why the step failed, if it did.
    pub failure: Option<String>,
    /// The compensations dispatched, in order (latest step first).
    pub compensations: Vec<Dispatch>,
    /// Compensations the target refused, with the reason. Compensations should not fail;
    /// these need a human.
    pub refused_compensations: Vec<(Dispatch, String)>,
    /// The instance's status afterwards.
    pub status: SagaStatus,
}

/// A saga instance, rebuilt from its records.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary<G> {
    /// The saga's state.
    pub state: G,
    /// Where it stands.
    pub status: SagaStatus,
    /// The steps whose events arrived, in order.
    pub completed: Vec<&'static str>,
    /// Why it was compensated, when it was.
    pub failure: Option<Failure>,
    /// The step whose timeout is armed: the instance waits for the event that follows it.
    pub waiting: Option<&'static str>,
    /// The flow the instance belongs to.
    pub correlation_id: Option<Uuid>,
    /// The version of its stream.
    pub version: Version,
}

impl<G: super::Saga> Summary<G> {
    /// When it was compensated: the compensations that ran, latest step first, each with the
    /// step it undid (those of the steps whose events arrived, as the runner dispatches them).
    /// Empty otherwise.
    pub fn compensated(&self) -> impl Iterator<Item = (&'static super::Step, super::Action)> + '_ {
        let ran = if self.status == SagaStatus::Compensated { &self.completed[..] } else { &[] };
        ran.iter().rev().filter_map(|name| {
            let step = G::STEPS.iter().find(|step| step.name == *name)?;
            Some((step, step.compensation?))
        })
    }
}

/// Why a saga instance was compensated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Step `step`'s handler returned an error, or one of its commands was refused.
    Failed {
        /// The step whose event was being handled.
        step: &'static str,
        /// The handler's error or the refusal.
        reason: String,
    },
    /// No next event came within the timeout armed after step `step`.
    TimedOut {
        /// The step whose timeout fired.
        step: &'static str,
    },
}

impl Failure {
    /// The step that failed, or whose timeout fired.
    pub fn step(&self) -> &'static str {
        match self {
            Self::Failed { step, .. } | Self::TimedOut { step } => step,
        }
    }
}
