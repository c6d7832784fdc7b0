#![doc = include_str!("../../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod aggregate;
pub mod backend;
pub mod backoff;
pub mod breaker;
pub mod bus;
pub mod checkpoint;
pub mod clock;
pub mod codec;
pub mod command;
pub mod command_bus;
pub mod consistency;
pub mod consumer;
pub mod dispatch;
pub mod effect;
pub mod envelope;
pub mod event;
pub mod event_store;
mod executor;
pub mod host;
pub mod live;
pub mod metrics;
pub mod projection;
pub mod reducer;
pub mod relay;
pub mod runner;
pub mod saga;
pub mod service;
pub mod store;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;

/// The error type of boundaries that carry any error: a backend's, a service's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

// The root holds the macros and what a first aggregate and saga name; everything else is
// reached through its module (`bus`, `checkpoint`, `event`, `live`, ...).
pub use aggregate::Aggregate;
pub use clock::{Clock, SystemClock, TestClock};
#[cfg(feature = "json")]
pub use codec::Json;
pub use codec::{Bincode, Codec};
pub use command::CommandContext;
pub use composable_macros::{
    aggregate, apply, command, compensate, event, project, projection, saga, start, step,
};
pub use effect::Effect;
pub use envelope::{EventMetadata, NewEvent, RecordedEvent, StoredEvent};
pub use event::Event;
pub use event_store::{EventStore, InMemoryEventStore};
pub use reducer::Reducer;
pub use runner::{AggregateRunner, CommandError};
pub use saga::{Dispatch, Saga, SagaRunner};
pub use store::Store;
pub use stream::{ExpectedVersion, Position, StreamId, Version};

/// One import for a first aggregate, saga and application:
/// `use composable::prelude::*;`.
///
/// ```
/// use composable::prelude::*;
/// # use serde::{Deserialize, Serialize};
///
/// #[event(name = "counter.incremented", version = 1)]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct Incremented;
///
/// #[derive(Debug, Clone, PartialEq)]
/// pub struct Increment;
///
/// #[derive(Debug, Default)]
/// pub struct Counter { count: u64 }
///
/// #[aggregate(stream = "counter")]
/// impl Counter {
///     #[command]
///     fn increment(&self, _command: Increment) -> Incremented { Incremented }
///
///     #[apply]
///     fn incremented(&mut self, _event: &Incremented) { self.count += 1; }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let runner = AggregateRunner::<Counter, _>::new(InMemoryEventStore::new(), ());
/// runner.execute("c1", Increment).await?;
/// assert_eq!(runner.load("c1").await?.state.count, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub mod prelude {
    pub use crate::host::App;
    pub use crate::saga::InMemoryTimerStore;
    pub use crate::{
        Aggregate, AggregateRunner, Dispatch, Effect, EventStore, InMemoryEventStore, Reducer,
        Saga, SagaRunner, Store,
    };
    pub use crate::{
        aggregate, apply, command, compensate, event, project, projection, saga, start, step,
    };
}

/// The guide: reducers, effects and the store; testing; aggregates and events; storage; read
/// models; sagas.
///
/// Its code blocks are compiled and run as doctests.
#[cfg(feature = "testing")]
#[doc = include_str!("../../docs/guide.md")]
pub mod guide {}

/// Troubleshooting: the compile errors the macros emit, the errors met at run time, and what to
/// do about each; slow loads, memory, connections, the bus, stuck sagas and lagging projections.
///
/// Its code blocks are compiled and run as doctests.
#[cfg(feature = "testing")]
#[doc = include_str!("../../docs/troubleshooting.md")]
pub mod troubleshooting {}

#[doc(hidden)]
pub mod __private;
