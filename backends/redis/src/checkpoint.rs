//! The checkpoints a Redis read model keeps beside its data, and the claims on them.

use std::sync::LazyLock;
use std::time::Duration;

use composable::checkpoint::{CheckpointError, CheckpointStore};
use composable::stream::Position;
use redis::Script;
use uuid::Uuid;

use crate::error::{RedisReadError, failed};
use crate::keys::{decode_position, encode_position};
use crate::store::RedisReadStore;

/// The longest claim sent to Redis (about 285 000 years): longer ones are cut to it, since
/// Redis refuses an expiry that overflows its clock.
const MAX_CLAIM_MS: u128 = 1 << 53;

/// Takes a free claim, or renews the holder's own: KEYS[1] the claim, ARGV[1] the holder,
/// ARGV[2] its TTL in milliseconds. An expired claim is gone from Redis, so it is free.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

/// Deletes the claim only when the holder holds it: KEYS[1] the claim, ARGV[1] the holder.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// The checkpoints a [`RedisReadStore`] keeps beside its data (`{prefix}:__checkpoint:{name}`),
/// as a consumer of the log reads them, and the claims on them (`{prefix}:__claim:{name}`,
/// expiring by themselves). Saving goes through
/// [`ReadStore::commit`](composable::projection::ReadStore::commit), with the batch; a plain
/// [`save`](CheckpointStore::save) moves the checkpoint alone.
#[derive(Debug, Clone)]
pub struct RedisCheckpoints {
    store: RedisReadStore,
}

impl RedisCheckpoints {
    pub(crate) fn new(store: RedisReadStore) -> Self {
        Self { store }
    }

    async fn try_load(&self, name: &str) -> Result<Position, RedisReadError> {
        let key = self.store.prefix_keys().checkpoint(name)?;
        let mut connection = self.store.connection().clone();
        let stored: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .map_err(failed("load a checkpoint"))?;
        let Some(stored) = stored else {
            return Ok(Position::START);
        };
        decode_position(&stored).ok_or_else(|| RedisReadError::Corrupt {
            key,
            reason: format!("`{}` is not a position", String::from_utf8_lossy(&stored)),
        })
    }

    async fn try_save(&self, name: &str, position: Position) -> Result<(), RedisReadError> {
        let key = self.store.prefix_keys().checkpoint(name)?;
        let mut connection = self.store.connection().clone();
        redis::cmd("SET")
            .arg(&key)
            .arg(encode_position(position))
            .exec_async(&mut connection)
            .await
            .map_err(failed("save a checkpoint"))
    }

    async fn try_claim(
        &self,
        name: &str,
        holder: Uuid,
        ttl: Duration,
    ) -> Result<bool, RedisReadError> {
        let key = self.store.prefix_keys().claim(name)?;
        let ms = ttl.as_millis().clamp(1, MAX_CLAIM_MS);
        let mut connection = self.store.connection().clone();
        let claimed: i64 = CLAIM
            .key(&key)
            .arg(holder.to_string())
            .arg(ms.to_string())
            .invoke_async(&mut connection)
            .await
            .map_err(failed("claim a checkpoint"))?;
        Ok(claimed == 1)
    }

    async fn try_release(&self, name: &str, holder: Uuid) -> Result<(), RedisReadError> {
        let key = self.store.prefix_keys().claim(name)?;
        let mut connection = self.store.connection().clone();
        let _released: i64 = RELEASE
            .key(&key)
            .arg(holder.to_string())
            .invoke_async(&mut connection)
            .await
            .map_err(failed("release a claim"))?;
        Ok(())
    }
}

impl CheckpointStore for RedisCheckpoints {
    async fn load(&self, name: &str) -> Result<Position, CheckpointError> {
        self.try_load(name).await.map_err(|error| error.into_checkpoint_error("load", name))
    }

    async fn save(&self, name: &str, position: Position) -> Result<(), CheckpointError> {
        self.try_save(name, position)
            .await
            .map_err(|error| error.into_checkpoint_error("save", name))
    }

    async fn claim(
        &self,
        name: &str,
        holder: Uuid,
        ttl: Duration,
    ) -> Result<bool, CheckpointError> {
        self.try_claim(name, holder, ttl)
            .await
            .map_err(|error| error.into_checkpoint_error("claim", name))
    }

    async fn release(&self, name: &str, holder: Uuid) -> Result<(), CheckpointError> {
        self.try_release(name, holder)
            .await
            .map_err(|error| error.into_checkpoint_error("release", name))
    }
}
