//! Redis as the cache in front of a document store ([`Cached`](composable::projection::Cached)).

use std::time::Duration;

use composable::projection::DocumentCache;
use redis::aio::ConnectionManager;

use crate::error::{RedisReadError, failed};
use crate::keys::Prefix;
use crate::store::unlink_matching;

/// A cache of documents on Redis, under `{prefix}:`, each entry with a time to live: the cache
/// of a [`Cached`](composable::projection::Cached) store, typically in front of PostgreSQL.
///
/// ```no_run
/// use std::time::Duration;
/// use composable::projection::Cached;
/// use composable_postgres::PostgresReadStore;
/// use composable_redis::RedisCache;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let documents = PostgresReadStore::connect("postgres://postgres@127.0.0.1/reads").await?;
/// let cache = RedisCache::connect("redis://127.0.0.1:6379/", "reads-cache", Duration::from_secs(300)).await?;
/// let read = Cached::new(documents, cache);
/// let spent: Option<u64> = read.get("spent", "ada").await?;
/// println!("{spent:?}, {:?}", read.stats());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisCache {
    connection: ConnectionManager,
    prefix: Prefix,
    ttl_ms: u64,
}

impl RedisCache {
    /// A cache on `connection`, under `{prefix}:`, whose entries live for `ttl` (at least 1 ms).
    ///
    /// # Errors
    /// [`RedisReadError::InvalidPrefix`].
    pub fn new(
        connection: ConnectionManager,
        prefix: &str,
        ttl: Duration,
    ) -> Result<Self, RedisReadError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Ok(Self { connection, prefix: Prefix::new(prefix)?, ttl_ms })
    }

    /// Connects to Redis at `url` as [`RedisReadStore::connect`](crate::RedisReadStore::connect)
    /// does.
    ///
    /// # Errors
    /// A bad prefix, or Redis cannot be reached.
    pub async fn connect(url: &str, prefix: &str, ttl: Duration) -> Result<Self, RedisReadError> {
        let store = crate::RedisReadStore::connect(url, prefix).await?;
        Self::new(store.connection().clone(), prefix, ttl)
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix.as_str())
    }
}

impl DocumentCache for RedisCache {
    type Error = RedisReadError;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisReadError> {
        let mut connection = self.connection.clone();
        redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut connection)
            .await
            .map_err(failed("read the cache"))
    }

    async fn fill(&self, key: &str, value: &[u8]) -> Result<(), RedisReadError> {
        let mut connection = self.connection.clone();
        let _: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl_ms)
            .query_async(&mut connection)
            .await
            .map_err(failed("fill the cache"))?;
        Ok(())
    }

    async fn put_all(&self, entries: &[(String, Vec<u8>)]) -> Result<(), RedisReadError> {
        let mut pipeline = redis::pipe();
        for (key, value) in entries {
            pipeline.cmd("SET").arg(self.key(key)).arg(value).arg("PX").arg(self.ttl_ms).ignore();
        }
        let mut connection = self.connection.clone();
        pipeline.exec_async(&mut connection).await.map_err(failed("write through to the cache"))
    }

    async fn remove_all(&self, keys: &[String]) -> Result<(), RedisReadError> {
        let keys: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("UNLINK")
            .arg(&keys)
            .query_async(&mut connection)
            .await
            .map_err(failed("invalidate cached documents"))?;
        Ok(())
    }

    async fn clear(&self) -> Result<(), RedisReadError> {
        let mut connection = self.connection.clone();
        unlink_matching(&mut connection, &format!("{}:*", self.prefix.as_str())).await
    }
}
