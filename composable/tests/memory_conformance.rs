//! The event store conformance suite against the in-memory store.

composable_conformance::event_store_conformance!(|| async {
    composable::event_store::InMemoryEventStore::new()
});
