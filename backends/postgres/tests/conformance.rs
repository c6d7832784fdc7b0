//! The event store conformance suite against PostgreSQL.

mod common;

composable_conformance::event_store_conformance!(common::fresh_store);
