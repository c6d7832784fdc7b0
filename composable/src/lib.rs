#![doc = include_str!("../../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod aggregate;
pub mod backoff;
pub mod bus;
pub mod checkpoint;
pub mod clock;
pub mod codec;
pub mod command;
pub mod command_bus;
pub mod consumer;
pub mod dispatch;
pub mod effect;
pub mod envelope;
pub mod event;
pub mod event_store;
mod executor;
pub mod host;
pub mod live;
pub mod memory;
pub mod reducer;
pub mod relay;
pub mod runner;
pub mod saga;
pub mod service;
pub mod store;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;

/// The error type of boundaries that carry any error: a backend's, a service's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub use aggregate::Aggregate;
pub use backoff::Backoff;
pub use bus::{BusError, BusMessage, Delivery, EventBus, InMemoryBus, Subscription};
pub use checkpoint::{CheckpointStore, InMemoryCheckpointStore};
pub use clock::{Clock, SystemClock, TestClock};
#[cfg(feature = "json")]
pub use codec::Json;
pub use codec::{Bincode, Codec, CodecError, CodecOperation};
pub use command::{CommandCodec, CommandContext, CommandDecodeError};
pub use composable_macros::{aggregate, apply, command, compensate, event, saga, start, step};
pub use effect::{CancelId, Effect, Sender};
pub use envelope::{EventMetadata, NewEvent, RecordedEvent, Snapshot};
pub use event::{DecodeError, Event, EventSet, IntoEvents, VersionedEvent};
pub use event_store::{AppendResult, EventStore, EventStoreError};
pub use live::{LiveAction, LiveAggregate, LiveReducer};
pub use memory::InMemoryEventStore;
pub use reducer::{Reducer, reducer_fn};
pub use relay::{Relay, RelayError};
pub use runner::{AggregateRunner, CommandError};
pub use saga::{Dispatch, Saga, SagaRunner};
pub use store::{SendHandle, Store};
pub use stream::{ExpectedVersion, Position, PositionParseError, StreamId, StreamIdError, Version};

/// The guide: reducers, effects and the store; testing; aggregates and events; storage.
///
/// Its code blocks are compiled and run as doctests.
#[cfg(feature = "testing")]
#[doc = include_str!("../../docs/guide.md")]
pub mod guide {}

#[doc(hidden)]
pub mod __private;
