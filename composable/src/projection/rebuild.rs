//! Rebuilding a projection's version from the start of the log, with its progress.

use std::time::{Duration, Instant};

use super::{Projection, ProjectionError, ProjectionRunner, ReadStore, RunnerError, Scope};
use crate::codec::Codec;
use crate::consumer::ConsumerError;
use crate::event_store::EventStore;
use crate::stream::Position;

/// How far a rebuild has got: what a progress bar shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RebuildProgress {
    /// Events read so far (handled, or moved past).
    pub done: u64,
    /// Events in the log when the rebuild began (more may commit while it runs).
    pub total: u64,
    /// Time since it began.
    pub elapsed: Duration,
}

impl RebuildProgress {
    /// Events per second so far.
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 { self.done as f64 / seconds } else { 0.0 }
    }

    /// The time left at the rate so far, once there is a rate.
    pub fn remaining(&self) -> Option<Duration> {
        let rate = self.rate();
        (rate > 0.0)
            .then(|| Duration::from_secs_f64(self.total.saturating_sub(self.done) as f64 / rate))
    }
}

impl<P: Projection, C: Codec> ProjectionRunner<P, C> {
    /// Rebuilds the projection's version in place: empties it ([`ReadStore::clear`]: its
    /// documents or rows, checkpoint and dead letters), then applies the whole log again,
    /// calling `progress` after each batch. Returns the last progress, once it has caught up
    /// with the head.
    ///
    /// Queries of this version see it partly built meanwhile, and no runner of the same
    /// version may run at the same time: stop it first. To rebuild while queries go on being
    /// answered, raise [`Projection::VERSION`] instead — the new version builds beside the old
    /// one and takes over once caught up.
    ///
    /// # Errors
    /// The read store or the event store failed, or an event failed as
    /// [`OnFailure::Stop`](super::OnFailure::Stop) says. Running it again starts over.
    pub async fn rebuild<S: EventStore>(
        self,
        events: S,
        mut progress: impl FnMut(&RebuildProgress) + Send,
    ) -> Result<RebuildProgress, ConsumerError<RunnerError<P>>> {
        let name = Self::name();
        self.store.clear(Scope::of::<P>()).await.map_err(|source| ConsumerError::Handler {
            consumer: name.clone(),
            after: Position::START,
            source: ProjectionError::Store { projection: P::NAME, source },
        })?;
        let total = events
            .count_after(Position::START)
            .await
            .map_err(|source| ConsumerError::Store { consumer: name, source })?;
        let started = Instant::now();
        let mut now = RebuildProgress { done: 0, total, elapsed: Duration::ZERO };
        progress(&now);
        let mut consumer = self.consumer(events);
        // Reading the next batch while one is applied; at the end, what the gap-safe log held
        // back, then the switch to this version if it is new.
        consumer
            .drain(|read| {
                now.done += read as u64;
                now.elapsed = started.elapsed();
                progress(&now);
            })
            .await?;
        now.elapsed = started.elapsed();
        Ok(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_and_the_time_left_follow_the_events_done() {
        let progress =
            RebuildProgress { done: 250, total: 1000, elapsed: Duration::from_millis(500) };
        assert!((progress.rate() - 500.0).abs() < 1e-9);
        assert_eq!(progress.remaining(), Some(Duration::from_millis(1500)));
        let start = RebuildProgress { done: 0, total: 10, elapsed: Duration::ZERO };
        assert_eq!(start.rate(), 0.0);
        assert_eq!(start.remaining(), None);
    }
}
