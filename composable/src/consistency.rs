//! Read-your-writes: a command's result carries a [`ReadToken`] — the position of its events in
//! the global log — and a query that must see the command's effect waits until the consumer it
//! reads from (a projection, any service reading the log) has got that far.
//!
//! The wait is woken by the consumer's progress (its [`Health`]), never by polling, and is
//! bounded: a timeout is a typed error ([`Stale`]), and the command has succeeded all the same.
//! A consumer moves its checkpoint past events it does not handle too, so a wait never hangs on a
//! consumer that ignores the command's events.
//!
//! ```
//! # use composable::{aggregate, apply, command, event};
//! # use serde::{Deserialize, Serialize};
//! # #[event(name = "counter.incremented", version = 1)]
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Incremented;
//! # #[derive(Debug, Clone, PartialEq)] pub struct Increment;
//! # #[derive(Debug, Default)] pub struct Counter;
//! # #[aggregate(stream = "counter")]
//! # impl Counter {
//! #     #[command] fn increment(&self, _c: Increment) -> Incremented { Incremented }
//! #     #[apply] fn incremented(&mut self, _e: &Incremented) {}
//! # }
//! # struct Count;
//! # impl composable::consumer::EventHandler for Count {
//! #     type Error = std::convert::Infallible;
//! #     async fn handle(&mut self, _events: &[composable::RecordedEvent]) -> Result<(), Self::Error> { Ok(()) }
//! # }
//! use std::time::Duration;
//! use composable::checkpoint::InMemoryCheckpointStore;
//! use composable::consumer::LogConsumer;
//! use composable::{AggregateRunner, InMemoryEventStore, service};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let store = InMemoryEventStore::new();
//! let counters = AggregateRunner::<Counter, _>::new(store.clone(), ());
//! let view = service::spawn(LogConsumer::new("view", store.clone(), InMemoryCheckpointStore::new(), Count));
//!
//! let done = counters.execute("c1", Increment).await?;
//! let token = done.token.expect("events were appended");
//! view.reached(token, Duration::from_secs(5)).await?;  // the view has seen the increment
//! view.stop().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::service::{Health, ServiceHandle, ServiceState};
use crate::stream::{Position, PositionParseError};

/// Where a command's events are in the global log: what a read must have reached to see them.
/// Ordered; printed and parsed as its position (`transaction.sequence`), so it can travel in an
/// HTTP header or a query string.
///
/// ```
/// use composable::consistency::ReadToken;
/// use composable::Position;
///
/// let token = ReadToken::new(Position::new(7, 3));
/// let travelled: ReadToken = token.to_string().parse()?;
/// assert_eq!(travelled, token);
/// assert!(ReadToken::new(Position::new(7, 4)) > token);
/// # Ok::<(), composable::stream::PositionParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadToken(Position);

impl ReadToken {
    /// The token of events ending at `position`.
    pub fn new(position: Position) -> Self {
        Self(position)
    }

    /// The position a reader must have reached.
    pub fn position(self) -> Position {
        self.0
    }

    /// Whether a reader at `position` has seen the events.
    pub fn is_reached_by(self, position: Position) -> bool {
        position >= self.0
    }
}

impl fmt::Display for ReadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ReadToken {
    type Err = PositionParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(Self)
    }
}

/// A reader did not reach a [`ReadToken`] in time, or cannot any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Stale {
    /// The wait timed out; the reader was at `reached` (what a query would see now).
    #[error("`{service}` reached {reached:?}, not {token}, within {waited:?}")]
    Timeout {
        /// The reader.
        service: String,
        /// The token waited for.
        token: ReadToken,
        /// How far the reader had got.
        reached: Option<Position>,
        /// How long the wait was.
        waited: Duration,
    },
    /// The reader stopped or failed before it got there.
    #[error("`{service}` {state:?} before it reached {token}")]
    Finished {
        /// The reader.
        service: String,
        /// The token waited for.
        token: ReadToken,
        /// How it ended.
        state: ServiceState,
    },
}

impl ServiceHandle {
    /// Waits, up to `within`, until this service (a consumer of the log) has handled everything
    /// up to `token`: woken by its progress, not by polling.
    ///
    /// # Errors
    /// [`Stale::Timeout`] when it did not get there in time (the command still succeeded: a
    /// query may then answer from what is there), [`Stale::Finished`] when the service stopped
    /// or failed first.
    pub async fn reached(&self, token: ReadToken, within: Duration) -> Result<Health, Stale> {
        let mut health = self.watch_health();
        let arrived = |health: &Health| {
            health.is_finished() || health.position.is_some_and(|at| token.is_reached_by(at))
        };
        let waited = tokio::time::timeout(within, health.wait_for(arrived)).await;
        let now = match waited {
            Ok(Ok(health)) => health.clone(),
            Ok(Err(_)) => self.health(),
            Err(_) => {
                return Err(Stale::Timeout {
                    service: self.name().to_owned(),
                    token,
                    reached: self.health().position,
                    waited: within,
                });
            }
        };
        if now.position.is_some_and(|at| token.is_reached_by(at)) {
            return Ok(now);
        }
        Err(Stale::Finished { service: self.name().to_owned(), token, state: now.state })
    }
}
