//! Shared set-up of the Redis tests: every test gets a store on the server named by
//! `REDIS_URL`, under a fresh prefix of its own, so tests run in parallel on one server.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use composable_redis::RedisReadStore;

pub const HOW_TO_START: &str = "start Redis for these tests with `scripts/test` (it starts and \
    stops a private server), or in this shell with `source scripts/lib/common.sh && source \
    scripts/lib/redis.sh && ensure_redis && redis_start`, which exports REDIS_URL (and \
    REDIS_PORT, REDIS_DIR and REDIS_START_COMMAND for the restart test)";

/// The server the tests run against.
pub fn redis_url() -> String {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("REDIS_URL is not set: {HOW_TO_START}"),
    }
}

/// A prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("test:{}", uuid::Uuid::now_v7().simple())
}

/// A store under a fresh prefix; panics, saying how to start Redis, when it cannot be reached.
pub async fn store() -> RedisReadStore {
    store_with_prefix(&unique_prefix()).await
}

/// A store under `prefix`.
pub async fn store_with_prefix(prefix: &str) -> RedisReadStore {
    let url = redis_url();
    let connected =
        tokio::time::timeout(Duration::from_secs(15), RedisReadStore::connect(&url, prefix)).await;
    let store = match connected {
        Ok(Ok(store)) => store,
        Ok(Err(error)) => panic!("cannot reach Redis at REDIS_URL={url}: {error}; {HOW_TO_START}"),
        Err(_) => panic!("Redis at REDIS_URL={url} did not answer within 15 s; {HOW_TO_START}"),
    };
    // The manager connects lazily after a failure: one round trip proves the server answers.
    if let Err(error) = store.exists("ping").await {
        panic!("Redis at REDIS_URL={url} does not answer: {error}; {HOW_TO_START}");
    }
    store
}
