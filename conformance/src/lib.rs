//! The conformance suites of Composable's ports. The in-memory twins in `composable` and every
//! backend (`composable-postgres`, `composable-kafka`, and any written outside this workspace)
//! run them, so a backend behaves as the twin an application was tested against does.
//!
//! Each suite is a set of `pub async fn` checks taking a factory of fresh stores (or buses), and
//! a macro expanding to one `#[tokio::test]` per check, so that a backend's test file is a line:
//!
//! | port | macro | checks |
//! | --- | --- | --- |
//! | event store | [`event_store_conformance!`] | [`event_store`] |
//! | bus | [`bus_conformance!`] | [`bus`] |
//! | checkpoints | [`checkpoint_conformance!`] | [`ports`] |
//! | saga timers | [`timer_conformance!`] | [`ports`] |
//! | read stores | [`read_store_conformance!`] | [`read_store`] |
//!
//! A dev-dependency only: applications never link it.

pub mod bus;
pub mod event_store;
pub mod ports;
pub mod read_store;
