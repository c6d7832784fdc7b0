//! The in-memory bus passes the bus conformance suite that `composable-kafka` passes too.

composable_conformance::bus_conformance!(
    |setup: composable_conformance::bus::BusSetup| async move {
        composable::bus::InMemoryBus::new().with_redelivery(setup.policy)
    }
);
