//! Test kit (feature `testing`): helpers for testing aggregates and backends.

pub mod conformance;
