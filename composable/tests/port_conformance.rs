//! The in-memory checkpoint and timer stores pass the suites `composable-postgres` passes too.

composable_conformance::checkpoint_conformance!(|| async {
    composable::checkpoint::InMemoryCheckpointStore::new()
});

mod timers {
    composable_conformance::timer_conformance!(|| async {
        composable::saga::InMemoryTimerStore::new()
    });
}
