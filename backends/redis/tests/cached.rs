//! Redis as the cache of PostgreSQL documents ([`Cached`]): the read-store suite, and the
//! cache's own behaviour — misses filled, hits counted, committed documents written through,
//! and the cache cleared when a new version takes over.
//!
//! Needs `REDIS_URL` and `DATABASE_URL` (`scripts/test` starts both).

mod common;

use std::time::Duration;

use composable::consumer::{Checkpoint, Saved};
use composable::projection::{CacheStats, Cached, CachedBatch, DocumentCache, ReadStore, Scope};
use composable::stream::Position;
use composable_postgres::{PgPoolOptions, PostgresReadStore};
use composable_redis::RedisCache;

type Store = Cached<PostgresReadStore, RedisCache>;

/// A fresh PostgreSQL database for the documents, and a fresh Redis prefix for the cache.
async fn store() -> Store {
    let url =
        std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty()).unwrap_or_else(|| {
            panic!(
                "DATABASE_URL is not set: run `scripts/test` (it starts a private PostgreSQL and \
             Redis), or `source scripts/lib/postgres.sh && pg_start` in this shell first"
            )
        });
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap_or_else(|error| panic!("cannot reach PostgreSQL at {url}: {error}"));
    let name = format!("composable_cached_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&admin)
        .await
        .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
    admin.close().await;
    let (base, _) = url.rsplit_once('/').expect("a database URL ends in /name");
    let documents = PostgresReadStore::connect(&format!("{base}/{name}"))
        .await
        .unwrap_or_else(|error| panic!("connect to {name}: {error}"));
    documents.migrate().await.unwrap_or_else(|error| panic!("migrate {name}: {error}"));
    let redis = common::store().await;
    let cache =
        RedisCache::new(redis.connection().clone(), redis.prefix(), Duration::from_secs(60))
            .expect("a valid prefix");
    Cached::new(documents, cache)
}

struct Documents(Store);

impl composable_conformance::read_store::Fixture for Documents {
    type Store = Store;

    fn store(&self) -> &Store {
        &self.0
    }

    async fn write(
        &self,
        batch: &mut CachedBatch<PostgresReadStore, RedisCache>,
        key: &str,
        value: u64,
    ) {
        batch.put("values", key, &value).await.expect("write a document");
    }

    async fn read(&self, key: &str) -> Option<u64> {
        self.0.get("values", key).await.expect("read a document")
    }
}

mod conformance {
    use super::*;

    composable_conformance::read_store_conformance!(|| async { Documents(store().await) });
    composable_conformance::stream_guards_conformance!(|| async { Documents(store().await) });
}

const V1: Scope = Scope::new("cached", 1);

async fn commit(
    store: &Store,
    writes: &[(&str, u64)],
    after: Position,
    to: Position,
    scope: Scope,
) {
    let mut batch = store.begin(scope).await.expect("begin");
    for (key, value) in writes {
        batch.put("spent", key, value).await.expect("put");
    }
    let name = scope.checkpoint();
    let at = Checkpoint { name: &name, after, to };
    assert_eq!(store.commit(batch, at).await.expect("commit"), Saved::ByHandler);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_fill_the_cache_hits_are_counted_and_commits_write_through() {
    let store = store().await;
    commit(&store, &[("ada", 1)], Position::START, Position::new(1, 1), V1).await;
    // Written through at the commit: the first read is a hit.
    assert_eq!(store.get::<u64>("spent", "ada").await.unwrap(), Some(1));
    assert_eq!(store.stats(), CacheStats { hits: 1, misses: 0 });

    // Gone from the cache (expired, evicted): read from PostgreSQL once, then cached again.
    store.cache().clear().await.unwrap();
    assert_eq!(store.get::<u64>("spent", "ada").await.unwrap(), Some(1));
    assert_eq!(store.get::<u64>("spent", "ada").await.unwrap(), Some(1));
    assert_eq!(store.stats(), CacheStats { hits: 2, misses: 1 });
    // What is in neither is a miss each time, and nothing is cached for it.
    assert_eq!(store.get::<u64>("spent", "nobody").await.unwrap(), None);
    assert_eq!(store.cache().get("spent/nobody").await.unwrap(), None);

    // A commit replaces the cached value; a deletion removes it.
    commit(&store, &[("ada", 2)], Position::new(1, 1), Position::new(1, 2), V1).await;
    assert_eq!(store.get::<u64>("spent", "ada").await.unwrap(), Some(2));
    let mut batch = store.begin(V1).await.unwrap();
    batch.delete("spent", "ada").await.unwrap();
    let at = Checkpoint {
        name: "projection.cached",
        after: Position::new(1, 2),
        to: Position::new(1, 3),
    };
    store.commit(batch, at).await.unwrap();
    assert_eq!(store.cache().get("spent/ada").await.unwrap(), None);
    assert_eq!(store.get::<u64>("spent", "ada").await.unwrap(), None);

    // A batch that does not commit leaves the cache as the store is.
    commit(&store, &[("bob", 5)], Position::new(1, 3), Position::new(1, 4), V1).await;
    let mut stale = store.begin(V1).await.unwrap();
    stale.put("spent", "bob", &50u64).await.unwrap();
    let moved =
        Checkpoint { name: "projection.cached", after: Position::START, to: Position::new(1, 9) };
    assert_eq!(store.commit(stale, moved).await.unwrap(), Saved::Moved);
    assert_eq!(store.get::<u64>("spent", "bob").await.unwrap(), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_taking_over_clears_the_cache() {
    let store = store().await;
    commit(&store, &[("ada", 1)], Position::START, Position::new(1, 1), V1).await;
    assert_eq!(store.get::<u64>("spent", "ada").await.unwrap(), Some(1));
    let v2 = Scope::new("cached", 2);
    commit(&store, &[("ada", 100)], Position::START, Position::new(1, 1), v2).await;
    // Version 2 builds unseen: not cached, and queries still read version 1.
    assert_eq!(store.get::<u64>("spent", "ada").await.unwrap(), Some(1));
    store.activate(v2).await.unwrap();
    assert_eq!(store.cache().get("spent/ada").await.unwrap(), None, "cleared at the switch");
    assert_eq!(store.get::<u64>("spent", "ada").await.unwrap(), Some(100));
}
