//! The Redis read store: reads of the committed data, and the commit script.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;
use std::time::Duration;

use composable::codec::{Bincode, Codec};
use composable::consumer::{Checkpoint, Saved};
use composable::envelope::RecordedEvent;
use composable::projection::{DeadLetter, ReadStore};
use composable::stream::Position;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::batch::RedisBatch;
use crate::checkpoint::RedisCheckpoints;
use crate::dead_letter;
use crate::error::{RedisReadError, failed};
use crate::keys::{Prefix, encode_position};

/// The commit script (`src/commit.lua`): checkpoint, guards and every operation, atomically.
static COMMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("commit.lua")));

/// A read store on Redis: one read model's keys, all under one prefix (its namespace).
///
/// A projection writing here gets a [`RedisBatch`] for each batch of events; its handlers queue
/// operations on it (values, counters, sorted sets, hashes) and the runner commits the batch in
/// one Lua script, atomically, together with the projection's checkpoint — only if the
/// checkpoint is still where the batch began. Each operation also carries the position of the
/// event that queued it, and is skipped when its key already has that position (or a newer one)
/// applied, so a batch delivered again (from the bus, without a checkpoint) counts once.
///
/// Cheap to clone: clones share one [`ConnectionManager`], which reconnects by itself when
/// Redis goes away; meanwhile operations fail with a transient
/// [`RedisReadError::Redis`].
///
/// ```no_run
/// use composable_redis::RedisReadStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let read = RedisReadStore::connect("redis://127.0.0.1:6379/", "scores").await?;
/// let top = read.top("leaderboard", 10).await?;
/// let visits = read.counter("visits").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisReadStore {
    connection: ConnectionManager,
    prefix: Prefix,
}

impl RedisReadStore {
    /// A store on `connection`, keeping its keys under `{prefix}:`.
    ///
    /// Two read models on one server need prefixes apart: neither may be the other's followed
    /// by `:` (`scores` and `scores:v2` could meet at `scores:v2:x`).
    ///
    /// # Errors
    /// [`RedisReadError::InvalidPrefix`] unless `prefix` is 1 to 64 characters of `a-z`,
    /// `0-9`, `_`, `.`, `:` and `-`.
    pub fn new(connection: ConnectionManager, prefix: &str) -> Result<Self, RedisReadError> {
        Ok(Self { connection, prefix: Prefix::new(prefix)? })
    }

    /// Connects to Redis at `url` (`redis://host:port/db`) with a [`ConnectionManager`] that
    /// times a connection attempt out after 2 s and a reply (a batch's script included) after
    /// 10 s, and retries a lost connection 5 times with back-off, up to 2 s apart, before the
    /// pending operations fail (the next operation starts reconnecting again).
    ///
    /// # Errors
    /// A bad prefix; [`RedisReadError::Redis`] when the URL is invalid or Redis cannot be
    /// reached (transient).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, RedisReadError> {
        let prefix = Prefix::new(prefix)?;
        let client = redis::Client::open(url).map_err(failed("parse the URL"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(5)
            .set_max_delay(Duration::from_secs(2));
        let connection =
            ConnectionManager::new_with_config(client, config).await.map_err(failed("connect"))?;
        Ok(Self { connection, prefix })
    }

    /// The key prefix: this read model's namespace.
    pub fn prefix(&self) -> &str {
        self.prefix.as_str()
    }

    /// The connection, for the application's own commands on other keys.
    pub fn connection(&self) -> &ConnectionManager {
        &self.connection
    }

    /// The Redis key of `key`: `{prefix}:{key}`.
    ///
    /// # Errors
    /// [`RedisReadError::InvalidKey`] for an empty key or one starting with `__`.
    pub fn redis_key(&self, key: &str) -> Result<String, RedisReadError> {
        self.prefix.key(key)
    }

    pub(crate) fn prefix_keys(&self) -> &Prefix {
        &self.prefix
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        command: &redis::Cmd,
    ) -> Result<T, RedisReadError> {
        let mut connection = self.connection.clone();
        command.query_async(&mut connection).await.map_err(failed(operation))
    }

    /// The value `key` holds, as committed.
    ///
    /// # Errors
    /// A bad key, a value that is not a `T`, or Redis.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, RedisReadError> {
        let key = self.prefix.key(key)?;
        let bytes: Option<Vec<u8>> = self.query("get", redis::cmd("GET").arg(&key)).await?;
        bytes.map(|bytes| decode(&key, &bytes)).transpose()
    }

    /// Whether `key` exists (whatever it holds).
    ///
    /// # Errors
    /// A bad key, or Redis.
    pub async fn exists(&self, key: &str) -> Result<bool, RedisReadError> {
        let key = self.prefix.key(key)?;
        let found: i64 = self.query("exists", redis::cmd("EXISTS").arg(&key)).await?;
        Ok(found > 0)
    }

    /// The counter `key` ([`RedisBatch::incr_by`]): 0 when there is none.
    ///
    /// # Errors
    /// A bad key, [`RedisReadError::Corrupt`] when it holds something else than a counter, or
    /// Redis.
    pub async fn counter(&self, key: &str) -> Result<i64, RedisReadError> {
        let key = self.prefix.key(key)?;
        let bytes: Option<Vec<u8>> =
            self.query("get a counter", redis::cmd("GET").arg(&key)).await?;
        bytes.map_or(Ok(0), |bytes| counter(&key, &bytes))
    }

    /// The `n` members of the sorted set `key` with the highest scores, highest first (members
    /// of equal scores in reverse byte order, as Redis sorts them).
    ///
    /// # Errors
    /// A bad key, or Redis (`key` holds something else than a sorted set).
    pub async fn top(&self, key: &str, n: usize) -> Result<Vec<(String, f64)>, RedisReadError> {
        let key = self.prefix.key(key)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let last = i64::try_from(n - 1).unwrap_or(i64::MAX);
        self.query(
            "read the top of a sorted set",
            redis::cmd("ZREVRANGE").arg(&key).arg(0).arg(last).arg("WITHSCORES"),
        )
        .await
    }

    /// The score of `member` in the sorted set `key`, if it is a member.
    ///
    /// # Errors
    /// A bad key, or Redis (`key` holds something else than a sorted set).
    pub async fn score(&self, key: &str, member: &str) -> Result<Option<f64>, RedisReadError> {
        let key = self.prefix.key(key)?;
        self.query("read a score", redis::cmd("ZSCORE").arg(&key).arg(member)).await
    }

    /// The value in `field` of the hash `key` ([`RedisBatch::hset`]).
    ///
    /// # Errors
    /// A bad key, a value that is not a `T`, or Redis (`key` holds something else than a hash).
    pub async fn hget<T: DeserializeOwned>(
        &self,
        key: &str,
        field: &str,
    ) -> Result<Option<T>, RedisReadError> {
        let key = self.prefix.key(key)?;
        let bytes: Option<Vec<u8>> =
            self.query("read a hash field", redis::cmd("HGET").arg(&key).arg(field)).await?;
        bytes.map(|bytes| decode(&format!("{key} {field}"), &bytes)).transpose()
    }

    /// Every field of the hash `key` with its value, in field (byte) order.
    ///
    /// # Errors
    /// A bad key, a value that is not a `T`, or Redis (`key` holds something else than a hash).
    pub async fn hgetall<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Vec<(String, T)>, RedisReadError> {
        let key = self.prefix.key(key)?;
        let all: BTreeMap<String, Vec<u8>> =
            self.query("read a hash", redis::cmd("HGETALL").arg(&key)).await?;
        all.into_iter()
            .map(|(field, bytes)| {
                let value = decode(&format!("{key} {field}"), &bytes)?;
                Ok((field, value))
            })
            .collect()
    }

    /// The counter in `field` of the hash `key` ([`RedisBatch::hincr_by`]): 0 when there is
    /// none.
    ///
    /// # Errors
    /// A bad key, [`RedisReadError::Corrupt`] when the field holds something else than a
    /// counter, or Redis (`key` holds something else than a hash).
    pub async fn hcounter(&self, key: &str, field: &str) -> Result<i64, RedisReadError> {
        let key = self.prefix.key(key)?;
        let bytes: Option<Vec<u8>> =
            self.query("read a hash counter", redis::cmd("HGET").arg(&key).arg(field)).await?;
        bytes.map_or(Ok(0), |bytes| counter(&format!("{key} {field}"), &bytes))
    }

    /// Every counter of the hash `key`, in field (byte) order.
    ///
    /// # Errors
    /// A bad key, [`RedisReadError::Corrupt`] when a field holds something else than a
    /// counter, or Redis (`key` holds something else than a hash).
    pub async fn hcounters(&self, key: &str) -> Result<Vec<(String, i64)>, RedisReadError> {
        let key = self.prefix.key(key)?;
        let all: BTreeMap<String, Vec<u8>> =
            self.query("read a hash", redis::cmd("HGETALL").arg(&key)).await?;
        all.into_iter()
            .map(|(field, bytes)| {
                let value = counter(&format!("{key} {field}"), &bytes)?;
                Ok((field, value))
            })
            .collect()
    }

    /// How long `key` has to live: `None` when it does not exist or does not expire.
    ///
    /// # Errors
    /// A bad key, or Redis.
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>, RedisReadError> {
        let key = self.prefix.key(key)?;
        // -2: no such key; -1: no expiry.
        let ms: i64 = self.query("read a TTL", redis::cmd("PTTL").arg(&key)).await?;
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }

    /// Runs the commit script on `batch`, with the checkpoint compare-and-set when `at` is
    /// given.
    async fn run(
        &self,
        batch: RedisBatch,
        at: Option<Checkpoint<'_>>,
    ) -> Result<Saved, RedisReadError> {
        let mut invocation = COMMIT.prepare_invoke();
        invocation.key(self.prefix.guards());
        match at {
            Some(at) => {
                invocation
                    .key(self.prefix.checkpoint(at.name)?)
                    .arg("checkpoint")
                    .arg(encode_position(at.after))
                    .arg(encode_position(at.to));
            }
            None => {
                invocation.arg("batch").arg("").arg("");
            }
        }
        invocation.arg(encode_position(Position::START));
        invocation.arg(if batch.replay { "raise" } else { "check" });
        for op in &batch.ops {
            invocation
                .key(&op.key)
                .arg(op.kind.opcode())
                .arg(op.position.map(encode_position).unwrap_or_default())
                .arg(&op.guard)
                .arg(&op.a)
                .arg(&op.b);
        }
        let mut connection = self.connection.clone();
        let reply: Vec<Value> =
            invocation.invoke_async(&mut connection).await.map_err(failed("commit a batch"))?;
        match reply_text(reply.first()).as_deref() {
            Some("ok") => {
                let applied = reply_int(reply.get(1));
                let skipped = reply_int(reply.get(2));
                tracing::debug!(
                    prefix = self.prefix.as_str(),
                    applied,
                    skipped,
                    checkpoint = at.map(|at| at.name),
                    "committed a batch"
                );
                Ok(if at.is_some() { Saved::ByHandler } else { Saved::ByConsumer })
            }
            Some("moved") => Ok(Saved::Moved),
            Some("replayed") => Err(RedisReadError::Replayed),
            Some("conflict") => {
                let index = reply_int(reply.get(1));
                let op = usize::try_from(index)
                    .ok()
                    .and_then(|index| batch.ops.get(index.checked_sub(1)?));
                Err(RedisReadError::Conflict {
                    operation: op.map_or("an operation", |op| op.kind.method()),
                    key: op.map(|op| op.key.clone()).unwrap_or_default(),
                    reason: reply_text(reply.get(2)).unwrap_or_default(),
                })
            }
            Some("corrupt") => {
                let key = reply_text(reply.get(1)).unwrap_or_default();
                let field = reply_text(reply.get(2)).unwrap_or_default();
                let value = reply_text(reply.get(3)).unwrap_or_default();
                let what = if field.is_empty() { "checkpoint" } else { "guard" };
                Err(RedisReadError::Corrupt {
                    key: if field.is_empty() { key } else { format!("{key} {field}") },
                    reason: format!("the {what} `{value}` is not a position"),
                })
            }
            _ => Err(RedisReadError::Corrupt {
                key: self.prefix.guards(),
                reason: format!("the commit script answered {reply:?}"),
            }),
        }
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, RedisReadError> {
    Bincode.decode(bytes).map_err(|source| RedisReadError::Codec { key: key.to_owned(), source })
}

fn counter(key: &str, bytes: &[u8]) -> Result<i64, RedisReadError> {
    std::str::from_utf8(bytes).ok().and_then(|text| text.parse().ok()).ok_or_else(|| {
        RedisReadError::Corrupt {
            key: key.to_owned(),
            reason: format!("{} bytes that are not a counter", bytes.len()),
        }
    })
}

fn reply_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(number) => Some(number.to_string()),
        _ => None,
    }
}

fn reply_int(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::Int(number)) => *number,
        _ => -1,
    }
}

impl ReadStore for RedisReadStore {
    type Batch = RedisBatch;
    type Error = RedisReadError;
    type Checkpoints = RedisCheckpoints;

    async fn begin(&self) -> Result<RedisBatch, RedisReadError> {
        Ok(RedisBatch::new(self.clone()))
    }

    fn applying(batch: &mut RedisBatch, event: &RecordedEvent) {
        batch.at(event.position);
    }

    /// One script: when checkpoint `at.name` is `at.after` (absent: [`Position::START`]),
    /// applies every operation its guard lets through and moves the checkpoint to `at.to`
    /// ([`Saved::ByHandler`]); otherwise applies nothing ([`Saved::Moved`]).
    async fn commit(&self, batch: RedisBatch, at: Checkpoint<'_>) -> Result<Saved, RedisReadError> {
        self.run(batch, Some(at)).await
    }

    /// The same script without the checkpoint: the guards absorb a batch delivered again.
    async fn commit_batch(&self, batch: RedisBatch) -> Result<(), RedisReadError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.run(batch, None).await.map(|_| ())
    }

    fn checkpoints(&self) -> RedisCheckpoints {
        RedisCheckpoints::new(self.clone())
    }

    /// Queues the letter (its event whole, in `{prefix}:__dead:{projection}`) with the batch.
    async fn park(batch: &mut RedisBatch, letter: DeadLetter) -> Result<(), RedisReadError> {
        dead_letter::park(batch, letter)
    }

    /// Checks that the letter is there and queues taking it out; the commit refuses the whole
    /// batch ([`RedisReadError::Replayed`]) if another replay took it meanwhile. A batch that
    /// replays dead letters applies its operations whatever the guards say (each letter is
    /// taken once, and other streams may have moved a shared key's guard past it since), and
    /// only raises the guards.
    async fn unpark(
        batch: &mut RedisBatch,
        projection: &str,
        event_id: Uuid,
    ) -> Result<bool, RedisReadError> {
        dead_letter::unpark(batch, projection, event_id).await
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, RedisReadError> {
        dead_letter::dead_letters(self, projection).await
    }

    async fn parked_streams(&self, projection: &str) -> Result<BTreeSet<String>, RedisReadError> {
        dead_letter::parked_streams(self, projection).await
    }
}
