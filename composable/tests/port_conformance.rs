//! The in-memory checkpoint and timer stores pass the suites `composable-postgres` passes too.

composable::checkpoint_conformance!(|| async {
    composable::checkpoint::InMemoryCheckpointStore::new()
});

mod timers {
    composable::timer_conformance!(|| async { composable::saga::InMemoryTimerStore::new() });
}
