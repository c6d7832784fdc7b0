//! The Redis read store: reads of the committed data, and the commit script.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;
use std::time::Duration;

use composable::codec::{Bincode, Codec};
use composable::consumer::{Checkpoint, Saved};
use composable::envelope::RecordedEvent;
use composable::projection::{DeadLetter, ReadStore, Scope, StreamGuards};
use composable::stream::{Position, Version};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, ScriptInvocation, Value};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::batch::RedisBatch;
use crate::checkpoint::RedisCheckpoints;
use crate::dead_letter;
use crate::error::{RedisReadError, failed};
use crate::keys::{Prefix, check_key, encode_position};

/// The commit script (`src/commit.lua`): checkpoint, guards and every operation, atomically.
static COMMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("commit.lua")));

/// The read script (`src/read.lua`): one key of the version that serves queries.
static READ: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("read.lua")));

/// The versions script (`src/versions.lua`): begin a batch, or switch versions.
static VERSIONS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("versions.lua")));

/// How many keys one `SCAN` step of a drop asks for.
const SCAN_COUNT: usize = 500;

/// A read store on Redis: one read model's keys, all under one prefix (its namespace).
///
/// The prefix keeps the versions of one projection apart (`{prefix}:v{N}:{key}`): queries read
/// the version that serves, a new version builds beside it, and once it takes over
/// ([`ReadStore::activate`]) the older versions' keys are deleted.
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

    /// The Redis key of `key` in version `version` of the read model:
    /// `{prefix}:v{version}:{key}`.
    ///
    /// # Errors
    /// [`RedisReadError::InvalidKey`] for an empty key or one starting with `__`.
    pub fn redis_key(&self, version: u32, key: &str) -> Result<String, RedisReadError> {
        self.prefix.key(version, key)
    }

    /// The read `command` of the user's `key` in the version that serves, its arguments to
    /// add after the key.
    fn read(&self, key: &str, command: &str) -> Result<ScriptInvocation<'static>, RedisReadError> {
        check_key(key)?;
        let mut invocation = READ.prepare_invoke();
        invocation
            .key(self.prefix.serving())
            .arg(format!("{}:v", self.prefix.as_str()))
            .arg(format!(":{key}"))
            .arg(command);
        Ok(invocation)
    }

    async fn query_read<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        invocation: &ScriptInvocation<'static>,
    ) -> Result<T, RedisReadError> {
        let mut connection = self.connection.clone();
        invocation.invoke_async(&mut connection).await.map_err(failed(operation))
    }

    /// Runs the versions script for `scope`: its outcome, the version it names, and (to begin
    /// a batch) the parked streams.
    async fn versions(
        &self,
        mode: &str,
        scope: Scope,
    ) -> Result<(String, String, BTreeSet<String>), RedisReadError> {
        let mut invocation = VERSIONS.prepare_invoke();
        invocation
            .key(self.prefix.owner())
            .key(self.prefix.serving())
            .key(self.prefix.versions())
            .key(self.prefix.parked_streams(&scope.checkpoint())?)
            .arg(mode)
            .arg(scope.projection)
            .arg(scope.version);
        let mut connection = self.connection.clone();
        let reply: Vec<Value> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(failed("read or switch the serving version"))?;
        let outcome = reply_text(reply.first()).unwrap_or_default();
        let value = reply_text(reply.get(1)).unwrap_or_default();
        if outcome == "shared" {
            return Err(RedisReadError::SharedPrefix {
                prefix: self.prefix.as_str().to_owned(),
                owner: value,
                projection: scope.projection.to_owned(),
            });
        }
        let parked = match reply.get(2) {
            Some(Value::Array(streams)) => {
                streams.iter().filter_map(|stream| reply_text(Some(stream))).collect()
            }
            _ => BTreeSet::new(),
        };
        Ok((outcome, value, parked))
    }

    /// A version as the store keeps it, or [`RedisReadError::Corrupt`].
    fn version_of(&self, text: &str) -> Result<Option<u32>, RedisReadError> {
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| RedisReadError::Corrupt {
            key: self.prefix.serving(),
            reason: format!("`{text}` is not a version"),
        })
    }

    /// Deletes every key of version `version` (a `SCAN` of `{prefix}:v{version}:*`, nothing
    /// else matches it), its checkpoint and dead letters; with `forget`, also its claim and
    /// its place among the versions.
    async fn remove(
        &self,
        projection: &str,
        version: u32,
        forget: bool,
    ) -> Result<(), RedisReadError> {
        let mut connection = self.connection.clone();
        unlink_matching(&mut connection, &format!("{}*", self.prefix.version(version))).await?;
        let name = Scope::checkpoint_of(projection, version);
        let mut own = vec![
            self.prefix.checkpoint(&name)?,
            self.prefix.dead_letters(&name)?,
            self.prefix.parked_streams(&name)?,
        ];
        if forget {
            own.push(self.prefix.claim(&name)?);
        }
        let _: i64 = redis::cmd("DEL")
            .arg(&own)
            .query_async(&mut connection)
            .await
            .map_err(failed("delete a version's checkpoint and dead letters"))?;
        if forget {
            let _: i64 = redis::cmd("SREM")
                .arg(self.prefix.versions())
                .arg(version)
                .query_async(&mut connection)
                .await
                .map_err(failed("forget a version"))?;
        }
        Ok(())
    }

    pub(crate) fn prefix_keys(&self) -> &Prefix {
        &self.prefix
    }

    /// The value `key` holds, as committed.
    ///
    /// # Errors
    /// A bad key, a value that is not a `T`, or Redis.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, RedisReadError> {
        let bytes: Option<Vec<u8>> = self.query_read("get", &self.read(key, "GET")?).await?;
        bytes.map(|bytes| decode(key, &bytes)).transpose()
    }

    /// Whether `key` exists (whatever it holds).
    ///
    /// # Errors
    /// A bad key, or Redis.
    pub async fn exists(&self, key: &str) -> Result<bool, RedisReadError> {
        let found: i64 = self.query_read("exists", &self.read(key, "EXISTS")?).await?;
        Ok(found > 0)
    }

    /// The counter `key` ([`RedisBatch::incr_by`]): 0 when there is none.
    ///
    /// # Errors
    /// A bad key, [`RedisReadError::Corrupt`] when it holds something else than a counter, or
    /// Redis.
    pub async fn counter(&self, key: &str) -> Result<i64, RedisReadError> {
        let bytes: Option<Vec<u8>> =
            self.query_read("get a counter", &self.read(key, "GET")?).await?;
        bytes.map_or(Ok(0), |bytes| counter(key, &bytes))
    }

    /// The `n` members of the sorted set `key` with the highest scores, highest first (members
    /// of equal scores in reverse byte order, as Redis sorts them).
    ///
    /// # Errors
    /// A bad key, or Redis (`key` holds something else than a sorted set).
    pub async fn top(&self, key: &str, n: usize) -> Result<Vec<(String, f64)>, RedisReadError> {
        let mut read = self.read(key, "ZREVRANGE")?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let last = i64::try_from(n - 1).unwrap_or(i64::MAX);
        read.arg(0).arg(last).arg("WITHSCORES");
        self.query_read("read the top of a sorted set", &read).await
    }

    /// The score of `member` in the sorted set `key`, if it is a member.
    ///
    /// # Errors
    /// A bad key, or Redis (`key` holds something else than a sorted set).
    pub async fn score(&self, key: &str, member: &str) -> Result<Option<f64>, RedisReadError> {
        let mut read = self.read(key, "ZSCORE")?;
        read.arg(member);
        self.query_read("read a score", &read).await
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
        let mut read = self.read(key, "HGET")?;
        read.arg(field);
        let bytes: Option<Vec<u8>> = self.query_read("read a hash field", &read).await?;
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
        let all: BTreeMap<String, Vec<u8>> =
            self.query_read("read a hash", &self.read(key, "HGETALL")?).await?;
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
        let mut read = self.read(key, "HGET")?;
        read.arg(field);
        let bytes: Option<Vec<u8>> = self.query_read("read a hash counter", &read).await?;
        bytes.map_or(Ok(0), |bytes| counter(&format!("{key} {field}"), &bytes))
    }

    /// Every counter of the hash `key`, in field (byte) order.
    ///
    /// # Errors
    /// A bad key, [`RedisReadError::Corrupt`] when a field holds something else than a
    /// counter, or Redis (`key` holds something else than a hash).
    pub async fn hcounters(&self, key: &str) -> Result<Vec<(String, i64)>, RedisReadError> {
        let all: BTreeMap<String, Vec<u8>> =
            self.query_read("read a hash", &self.read(key, "HGETALL")?).await?;
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
        // -2: no such key; -1: no expiry.
        let ms: i64 = self.query_read("read a TTL", &self.read(key, "PTTL")?).await?;
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
        invocation
            .key(self.prefix.guards(batch.scope.version))
            .key(self.prefix.serving())
            .key(self.prefix.streams(batch.scope.version));
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
        invocation.arg(batch.scope.version);
        invocation.arg(batch.streams.len());
        for (stream, from, to) in &batch.streams {
            let from = from.map(|from| from.0.to_string()).unwrap_or_default();
            invocation.arg(stream).arg(from).arg(to.0);
        }
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
            Some("retired") => Ok(Saved::Retired),
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
                key: self.prefix.guards(batch.scope.version),
                reason: format!("the commit script answered {reply:?}"),
            }),
        }
    }
}

/// Deletes every key matching `pattern` (a `SCAN`, then `UNLINK` of what each step found).
pub(crate) async fn unlink_matching(
    connection: &mut ConnectionManager,
    pattern: &str,
) -> Result<(), RedisReadError> {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(connection)
            .await
            .map_err(failed("find the keys to delete"))?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(connection)
                .await
                .map_err(failed("delete keys"))?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
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

    /// Redis unreachable, or a replay that lost its race; a refused operation
    /// ([`RedisReadError::Conflict`]) or a corrupt key will not pass by itself.
    fn is_transient(error: &RedisReadError) -> bool {
        error.is_transient() || matches!(error, RedisReadError::Replayed)
    }

    /// One script: the first version of the prefix's projection to begin a batch serves at
    /// once; another projection is refused ([`RedisReadError::SharedPrefix`]). It answers the
    /// parked streams too.
    async fn begin(&self, scope: Scope) -> Result<RedisBatch, RedisReadError> {
        let (_, serving, parked) = self.versions("begin", scope).await?;
        let serving = self.version_of(&serving)?.unwrap_or(scope.version);
        Ok(RedisBatch::new(self.clone(), scope, serving, parked))
    }

    fn serving(batch: &RedisBatch) -> u32 {
        batch.serving
    }

    fn parked(batch: &RedisBatch) -> &BTreeSet<String> {
        &batch.parked
    }

    async fn active_version(
        &self,
        projection: &'static str,
    ) -> Result<Option<u32>, RedisReadError> {
        let mut connection = self.connection.clone();
        let (owner, serving): (Option<String>, Option<String>) = redis::cmd("MGET")
            .arg(self.prefix.owner())
            .arg(self.prefix.serving())
            .query_async(&mut connection)
            .await
            .map_err(failed("read the serving version"))?;
        if owner.as_deref() != Some(projection) {
            return Ok(None);
        }
        self.version_of(serving.as_deref().unwrap_or_default())
    }

    /// The switch is one script (a batch of an older version committed after it applies
    /// nothing); the older versions' keys are then deleted with `SCAN` and `UNLINK`.
    async fn activate(&self, scope: Scope) -> Result<Option<u32>, RedisReadError> {
        let (outcome, old, _) = self.versions("activate", scope).await?;
        let old = self.version_of(&old)?;
        if outcome == "kept" {
            return Ok(old);
        }
        let mut connection = self.connection.clone();
        let versions: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.prefix.versions())
            .query_async(&mut connection)
            .await
            .map_err(failed("read the versions"))?;
        for version in versions {
            if let Some(older) = self.version_of(&version)?.filter(|found| *found < scope.version) {
                self.remove(scope.projection, older, true).await?;
            }
        }
        Ok(old.filter(|old| *old != scope.version))
    }

    async fn clear(&self, scope: Scope) -> Result<(), RedisReadError> {
        self.remove(scope.projection, scope.version, false).await
    }

    /// Guards each key with the event's position — except in a batch that guards streams
    /// ([`StreamGuards`]), whose events of different streams may come in any order: a key
    /// several streams write would then skip the earlier of them.
    fn applying(batch: &mut RedisBatch, event: &RecordedEvent) {
        if batch.streams.is_empty() {
            batch.at(event.position);
        }
    }

    /// One script: when checkpoint `at.name` is `at.after` (absent: [`Position::START`]),
    /// applies every operation its guard lets through and moves the checkpoint to `at.to`
    /// ([`Saved::ByHandler`]); otherwise applies nothing ([`Saved::Moved`]).
    async fn commit(&self, batch: RedisBatch, at: Checkpoint<'_>) -> Result<Saved, RedisReadError> {
        if batch.serving > batch.scope.version {
            return Ok(Saved::Retired);
        }
        self.run(batch, Some(at)).await
    }

    /// The same script without the checkpoint: the guards absorb a batch delivered again, the
    /// stream guards ([`StreamGuards`]) one whose streams moved meanwhile.
    async fn commit_batch(&self, batch: RedisBatch) -> Result<Saved, RedisReadError> {
        if batch.serving > batch.scope.version {
            return Ok(Saved::Retired);
        }
        if batch.is_empty() {
            return Ok(Saved::ByConsumer);
        }
        self.run(batch, None).await
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

/// Stream guards in the hash `{prefix}:v{N}:__streams`, checked and moved by the commit script
/// with the rest of the batch.
impl StreamGuards for RedisReadStore {
    async fn applied(
        batch: &mut RedisBatch,
        streams: &[&str],
    ) -> Result<BTreeMap<String, Version>, RedisReadError> {
        let store = batch.store();
        let key = store.prefix.streams(batch.scope.version);
        let mut connection = store.connection.clone();
        let found: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&key)
            .arg(streams)
            .query_async(&mut connection)
            .await
            .map_err(failed("read the streams' versions"))?;
        let mut applied = BTreeMap::new();
        for (stream, version) in streams.iter().zip(found) {
            let Some(version) = version else { continue };
            match version.parse::<u64>() {
                Ok(parsed) if parsed > 0 && parsed.to_string() == version => {
                    applied.insert((*stream).to_owned(), Version(parsed));
                }
                _ => {
                    return Err(RedisReadError::Corrupt {
                        key: format!("{key} {stream}"),
                        reason: format!("the stream version `{version}` is not one"),
                    });
                }
            }
        }
        Ok(applied)
    }

    fn guard(batch: &mut RedisBatch, stream: &str, from: Option<Version>, to: Version) {
        batch.streams.push((stream.to_owned(), from, to));
    }
}
