//! The testing kit (feature `testing`): an exhaustive [`TestStore`] for reducers,
//! given/when/then for aggregates, an aggregate's [`Timeline`] for snapshot tests, property
//! checks of aggregates over generated commands (`Properties`, feature `proptest`), given events
//! → expected commands for sagas, and given events → the read model for projections.
//!
//! Tests run without I/O and without sleeping: effects run on the test's runtime, delays run on a
//! [`TestClock`](crate::TestClock) the test advances, and every state change and every action an
//! effect feeds back must be stated by the test.

mod aggregate;
mod diff;
mod hooked;
mod log;
mod projection;
#[cfg(feature = "proptest")]
mod properties;
mod saga;
mod test_store;
mod timeline;

pub use aggregate::{AggregateTest, Decision};
pub use hooked::HookedStore;
pub use log::read_all_to_head;
pub use projection::ProjectionTest;
#[cfg(feature = "proptest")]
pub use properties::Properties;
pub use saga::{RecordingDispatcher, SagaTest};
pub use test_store::{Exhaustivity, TestStore};
pub use timeline::Timeline;
