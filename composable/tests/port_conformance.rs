//! The in-memory checkpoint, timer and read stores pass the suites `composable-postgres` passes
//! too.

composable_conformance::checkpoint_conformance!(|| async {
    composable::checkpoint::InMemoryCheckpointStore::new()
});

mod timers {
    composable_conformance::timer_conformance!(|| async {
        composable::saga::InMemoryTimerStore::new()
    });
}

mod documents {
    use composable::projection::{DocumentBatch, InMemoryDocuments, ReadStore};

    /// Values in the collection `values` of a fresh [`InMemoryDocuments`].
    struct Documents(InMemoryDocuments);

    impl composable_conformance::read_store::Fixture for Documents {
        type Store = InMemoryDocuments;

        fn store(&self) -> &InMemoryDocuments {
            &self.0
        }

        async fn write(&self, batch: &mut DocumentBatch, key: &str, value: u64) {
            batch.put("values", key, &value).expect("a valid collection");
        }

        async fn read(&self, key: &str) -> Option<u64> {
            self.0.get("values", key).expect("a valid collection")
        }
    }

    composable_conformance::read_store_conformance!(|| async {
        Documents(InMemoryDocuments::new())
    });
    composable_conformance::stream_guards_conformance!(|| async {
        Documents(InMemoryDocuments::new())
    });

    mod checkpoints {
        use super::*;

        // The checkpoints a document store keeps are checkpoints like any others.
        composable_conformance::checkpoint_conformance!(|| async {
            InMemoryDocuments::new().checkpoints()
        });
    }
}

mod cached {
    use std::time::Duration;

    use composable::projection::{Cached, CachedBatch, InMemoryCache, InMemoryDocuments};

    type Store = Cached<InMemoryDocuments, InMemoryCache>;

    /// Values in the collection `values`, in memory behind an in-memory cache.
    struct Documents(Store);

    impl composable_conformance::read_store::Fixture for Documents {
        type Store = Store;

        fn store(&self) -> &Store {
            &self.0
        }

        async fn write(
            &self,
            batch: &mut CachedBatch<InMemoryDocuments, InMemoryCache>,
            key: &str,
            value: u64,
        ) {
            batch.put("values", key, &value).await.expect("a valid collection");
        }

        async fn read(&self, key: &str) -> Option<u64> {
            self.0.get("values", key).await.expect("a valid collection")
        }
    }

    composable_conformance::read_store_conformance!(|| async {
        let cache = InMemoryCache::new(Duration::from_secs(60));
        Documents(Cached::new(InMemoryDocuments::new(), cache))
    });
    composable_conformance::stream_guards_conformance!(|| async {
        let cache = InMemoryCache::new(Duration::from_secs(60));
        Documents(Cached::new(InMemoryDocuments::new(), cache))
    });
}
