//! How far behind the log a projection is, and what it is doing.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::event_store::{EventStore, EventStoreError};
use crate::service::{Health, ServiceState};
use crate::stream::Position;

/// How far a consumer of the log is behind its head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    /// Committed events it has not handled yet.
    pub events: u64,
    /// How long the oldest of them has waited (zero when there are none).
    pub behind: Duration,
}

impl Lag {
    /// The lag of a consumer at `position` in `store`'s log, at time `now`.
    ///
    /// # Errors
    /// The event store failed.
    pub async fn of<S: EventStore>(
        store: &S,
        position: Position,
        now: DateTime<Utc>,
    ) -> Result<Self, EventStoreError> {
        let events = store.count_after(position).await?;
        if events == 0 {
            return Ok(Self::default());
        }
        let oldest = store.read_all(position, 1).await?;
        let behind = oldest
            .first()
            .and_then(|event| (now - event.recorded_at).to_std().ok())
            .unwrap_or_default();
        Ok(Self { events, behind })
    }
}

/// What a projection is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProjectionState {
    /// Starting, or behind the head and applying what it has not seen (after a start, a
    /// restart, or a burst of commands).
    CatchingUp,
    /// At the head, following the log as it grows.
    Running,
    /// A new version building beside the one that serves queries, from the start of the log:
    /// queries switch to it once it has caught up.
    Rebuilding,
    /// Another process holds its claim and does the work; this one takes over if that stops.
    Standby,
    /// Stopped with this error.
    Failed(String),
    /// Stopped.
    Stopped,
}

impl ProjectionState {
    /// The state its service's health shows.
    pub fn of(health: &Health) -> Self {
        match &health.state {
            ServiceState::Failed(error) => Self::Failed(error.clone()),
            ServiceState::Stopped | ServiceState::Stopping => Self::Stopped,
            _ if health.standby => Self::Standby,
            ServiceState::Running if health.caught_up => Self::Running,
            ServiceState::Starting | ServiceState::Running => Self::CatchingUp,
        }
    }

    /// The state of version `version` while `serving` serves queries: a live version not yet
    /// serving is rebuilding.
    #[must_use]
    pub fn building(self, version: u32, serving: Option<u32>) -> Self {
        match self {
            Self::CatchingUp | Self::Running
                if serving.is_some_and(|serving| serving < version) =>
            {
                Self::Rebuilding
            }
            state => state,
        }
    }
}

/// A projection's state, position and lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStatus {
    /// Its service's name (`projection.{NAME}`).
    pub name: String,
    /// What it is doing.
    pub state: ProjectionState,
    /// The version this process runs.
    pub version: u32,
    /// The version that serves queries, if any (older while this one is rebuilding).
    pub serving: Option<u32>,
    /// How far it got in the log (`None` before it first read its checkpoint).
    pub position: Option<Position>,
    /// How far behind the head that is.
    pub lag: Lag,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_version_newer_than_the_serving_one_is_rebuilding() {
        let live = [ProjectionState::CatchingUp, ProjectionState::Running];
        for state in live {
            assert_eq!(state.clone().building(2, Some(1)), ProjectionState::Rebuilding);
            assert_eq!(state.clone().building(2, Some(2)), state);
            assert_eq!(state.clone().building(1, None), state);
        }
        let stopped = ProjectionState::Failed("boom".into());
        assert_eq!(stopped.clone().building(2, Some(1)), stopped);
        assert_eq!(ProjectionState::Stopped.building(1, Some(2)), ProjectionState::Stopped);
    }
}
