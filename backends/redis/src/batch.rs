//! A batch of a Redis read model: operations buffered in memory, sent in one script at commit.

use std::collections::BTreeSet;
use std::time::Duration;

use composable::codec::{Bincode, Codec};
use composable::projection::Scope;
use composable::stream::{Position, Version};
use serde::Serialize;

use crate::error::RedisReadError;
use crate::keys::{key_guard, member_guard};
use crate::store::RedisReadStore;

/// The longest TTL sent to Redis (about 285 000 years): longer ones are cut to it, since
/// Redis refuses an expiry that overflows its clock.
const MAX_TTL_MS: u128 = 1 << 53;

/// What an operation does, as the commit script names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Set,
    Delete,
    IncrBy,
    ZIncrBy,
    ZAdd,
    HSet,
    HDel,
    HIncrBy,
    /// Adds a field to one of the store's own hashes (a dead letter), unguarded.
    Park,
    /// Removes a field of one of the store's own hashes, refusing the batch when it is gone.
    Unpark,
}

impl Kind {
    /// The script's name of the operation.
    pub(crate) fn opcode(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Delete => "del",
            Self::IncrBy => "incr",
            Self::ZIncrBy => "zincr",
            Self::ZAdd => "zadd",
            Self::HSet => "hset",
            Self::HDel => "hdel",
            Self::HIncrBy => "hincr",
            Self::Park => "park",
            Self::Unpark => "unpark",
        }
    }

    /// The batch method that queued it, for errors.
    pub(crate) fn method(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Delete => "delete",
            Self::IncrBy => "incr_by",
            Self::ZIncrBy => "zincr_by",
            Self::ZAdd => "zadd",
            Self::HSet => "hset",
            Self::HDel => "hdel",
            Self::HIncrBy => "hincr_by",
            Self::Park => "park",
            Self::Unpark => "unpark",
        }
    }
}

/// One buffered operation.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub(crate) kind: Kind,
    /// The Redis key.
    pub(crate) key: String,
    /// The position of the event that queued it, if `applying` was called.
    pub(crate) position: Option<Position>,
    /// The field of the guard hash that keeps the position last applied to what it changes.
    pub(crate) guard: String,
    /// Its arguments, as the script reads them (`a`, `b`).
    pub(crate) a: Vec<u8>,
    pub(crate) b: Vec<u8>,
}

/// The changes of one batch of a [`RedisReadStore`](crate::RedisReadStore): buffered, nothing
/// is sent to Redis until the batch commits, in one atomic script, all of it or nothing.
///
/// Every operation takes its key relative to the store's prefix. Once
/// [`applying`](composable::projection::ReadStore::applying) was called with an event (the
/// projection runner does it before each event), the operations queued after it carry the
/// event's position, and the commit skips any of them whose key (or member, or field) already
/// has that position or a newer one applied: an event delivered twice counts once. Operations
/// queued before any position are always applied.
///
/// Values are encoded with [`Bincode`]; counters are Redis integers, scores Redis doubles.
#[derive(Debug)]
pub struct RedisBatch {
    store: RedisReadStore,
    pub(crate) scope: Scope,
    /// The version that served when it began.
    pub(crate) serving: u32,
    /// The streams with dead letters when it began.
    pub(crate) parked: BTreeSet<String>,
    position: Option<Position>,
    pub(crate) ops: Vec<Op>,
    /// It replays dead letters: each taken once by its `unpark`, so the guards are only raised.
    pub(crate) replay: bool,
    /// Streams it moves: from the version read (`None`: none), to the one applied
    /// ([`StreamGuards`](composable::projection::StreamGuards)).
    pub(crate) streams: Vec<(String, Option<Version>, Version)>,
}

impl RedisBatch {
    pub(crate) fn new(
        store: RedisReadStore,
        scope: Scope,
        serving: u32,
        parked: BTreeSet<String>,
    ) -> Self {
        Self {
            store,
            scope,
            serving,
            parked,
            position: None,
            ops: Vec::new(),
            replay: false,
            streams: Vec::new(),
        }
    }

    /// The store the batch commits to.
    pub(crate) fn store(&self) -> &RedisReadStore {
        &self.store
    }

    /// Queues an operation on one of the store's own keys: no position, so no guard.
    pub(crate) fn push_own(&mut self, kind: Kind, key: String, a: Vec<u8>, b: Vec<u8>) {
        self.ops.push(Op { kind, key, position: None, guard: String::new(), a, b });
    }

    /// The operations queued from now on carry `position` (what
    /// [`applying`](composable::projection::ReadStore::applying) calls with each event's).
    pub fn at(&mut self, position: Position) {
        self.position = Some(position);
    }

    /// The position the next operations carry, if any.
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// How many operations are queued.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no operation is queued (and no stream is moved).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.streams.is_empty()
    }

    fn push(&mut self, kind: Kind, key: String, guard: String, a: Vec<u8>, b: Vec<u8>) {
        self.ops.push(Op { kind, key, position: self.position, guard, a, b });
    }

    fn whole(
        &mut self,
        kind: Kind,
        key: &str,
        a: Vec<u8>,
        b: Vec<u8>,
    ) -> Result<(), RedisReadError> {
        let redis_key = self.store.redis_key(self.scope.version, key)?;
        self.push(kind, redis_key, key_guard(key), a, b);
        Ok(())
    }

    fn member(
        &mut self,
        kind: Kind,
        key: &str,
        member: &str,
        b: Vec<u8>,
    ) -> Result<(), RedisReadError> {
        let redis_key = self.store.redis_key(self.scope.version, key)?;
        self.push(kind, redis_key, member_guard(key, member), member.as_bytes().to_vec(), b);
        Ok(())
    }

    fn encode<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<Vec<u8>, RedisReadError> {
        Bincode.encode(value).map_err(|source| RedisReadError::Codec {
            key: format!("{}:{key}", self.store.prefix()),
            source,
        })
    }

    /// Sets `key` to `value`, removing any TTL it had.
    ///
    /// # Errors
    /// A bad key, or a value the codec cannot encode.
    pub fn set<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), RedisReadError> {
        let bytes = self.encode(key, value)?;
        self.whole(Kind::Set, key, bytes, Vec::new())
    }

    /// Sets `key` to `value`, to expire after `ttl` (at least a millisecond).
    ///
    /// # Errors
    /// A bad key, or a value the codec cannot encode.
    pub fn set_with_ttl<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), RedisReadError> {
        let bytes = self.encode(key, value)?;
        let ms = ttl.as_millis().clamp(1, MAX_TTL_MS);
        self.whole(Kind::Set, key, bytes, ms.to_string().into_bytes())
    }

    /// Deletes `key`, whatever it holds (nothing when there is none).
    ///
    /// # Errors
    /// A bad key.
    pub fn delete(&mut self, key: &str) -> Result<(), RedisReadError> {
        self.whole(Kind::Delete, key, Vec::new(), Vec::new())
    }

    /// Adds `by` to the counter `key` (from 0 when there is none).
    ///
    /// # Errors
    /// A bad key. The commit refuses the batch when `key` holds something else than a counter,
    /// or the counter would reach ±9·10¹⁸ (short of the `i64` range, where Redis would fail half
    /// way through the batch).
    pub fn incr_by(&mut self, key: &str, by: i64) -> Result<(), RedisReadError> {
        self.whole(Kind::IncrBy, key, by.to_string().into_bytes(), Vec::new())
    }

    /// Adds `by` to the score of `member` in the sorted set `key` (from 0 when it has none).
    ///
    /// # Errors
    /// A bad key, or a score that is not finite. The commit refuses the batch when `key` holds
    /// something else than a sorted set.
    pub fn zincr_by(&mut self, key: &str, member: &str, by: f64) -> Result<(), RedisReadError> {
        let by = self.score(key, member, by)?;
        self.member(Kind::ZIncrBy, key, member, by)
    }

    /// Sets the score of `member` in the sorted set `key`.
    ///
    /// # Errors
    /// A bad key, or a score that is not finite. The commit refuses the batch when `key` holds
    /// something else than a sorted set.
    pub fn zadd(&mut self, key: &str, member: &str, score: f64) -> Result<(), RedisReadError> {
        let score = self.score(key, member, score)?;
        self.member(Kind::ZAdd, key, member, score)
    }

    fn score(&self, key: &str, member: &str, score: f64) -> Result<Vec<u8>, RedisReadError> {
        if !score.is_finite() {
            return Err(RedisReadError::InvalidScore {
                key: format!("{}:{key}", self.store.prefix()),
                member: member.to_owned(),
                score,
            });
        }
        // The shortest text that reads back as the same double; Redis parses it with strtod.
        Ok(format!("{score:e}").into_bytes())
    }

    /// Sets `field` of the hash `key` to `value`.
    ///
    /// # Errors
    /// A bad key, or a value the codec cannot encode. The commit refuses the batch when `key`
    /// holds something else than a hash.
    pub fn hset<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        field: &str,
        value: &T,
    ) -> Result<(), RedisReadError> {
        let bytes = self.encode(key, value)?;
        self.member(Kind::HSet, key, field, bytes)
    }

    /// Deletes `field` of the hash `key` (nothing when there is none).
    ///
    /// # Errors
    /// A bad key. The commit refuses the batch when `key` holds something else than a hash.
    pub fn hdel(&mut self, key: &str, field: &str) -> Result<(), RedisReadError> {
        self.member(Kind::HDel, key, field, Vec::new())
    }

    /// Adds `by` to the counter in `field` of the hash `key` (from 0 when there is none).
    ///
    /// # Errors
    /// A bad key. The commit refuses the batch when `key` holds something else than a hash,
    /// the field something else than a counter, or the counter would reach ±9·10¹⁸.
    pub fn hincr_by(&mut self, key: &str, field: &str, by: i64) -> Result<(), RedisReadError> {
        self.member(Kind::HIncrBy, key, field, by.to_string().into_bytes())
    }
}
