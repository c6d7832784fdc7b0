//! The in-memory bus passes the bus conformance suite that `composable-kafka` passes too.

composable::bus_conformance!(|setup: composable::testing::bus_conformance::BusSetup| async move {
    composable::bus::InMemoryBus::new().with_redelivery(setup.policy)
});
