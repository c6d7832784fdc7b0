#![doc = include_str!("../../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod aggregate;
pub mod codec;
pub mod envelope;
pub mod event;
pub mod event_store;
pub mod stream;

pub use aggregate::Aggregate;
#[cfg(feature = "json")]
pub use codec::Json;
pub use codec::{Bincode, Codec, CodecError, CodecOperation};
pub use composable_macros::{aggregate, apply, command, event};
pub use envelope::{EventMetadata, NewEvent, RecordedEvent, Snapshot};
pub use event::{DecodeError, Event, EventSet, IntoEvents, VersionedEvent};
pub use event_store::{AppendResult, EventStore, EventStoreError};
pub use stream::{ExpectedVersion, Position, StreamId, StreamIdError, Version};

#[doc(hidden)]
pub mod __private;
