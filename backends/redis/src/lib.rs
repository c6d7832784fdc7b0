//! Redis backend for Composable: read models — counters, leaderboards, hashes, typed values with
//! a TTL — kept up to date by projections, for queries that must be fast.
//!
//! [`RedisReadStore`] implements [`composable::projection::ReadStore`]. A projection writing to
//! it queues operations on a [`RedisBatch`] for each batch of events; nothing reaches Redis until
//! the batch commits, and then all of it goes in **one Lua script**, which Redis runs alone and
//! whole:
//!
//! * [`commit`](composable::projection::ReadStore::commit) (the projection's own consumer of the
//!   log) checks the projection's checkpoint, kept under the same prefix: only when it is still
//!   where the batch began does the script apply the batch and move the checkpoint, in the same
//!   step. So a crash between two batches repeats nothing — the next process resumes after the
//!   last committed batch — and of two processes running one projection only one moves it, the
//!   other being told [`Saved::Moved`](composable::consumer::Saved::Moved).
//! * [`commit_batch`](composable::projection::ReadStore::commit_batch) (a projection fed by the
//!   bus, which keeps its position in the broker) applies the batch without a checkpoint.
//!   Delivery is then at least once: a batch handled but not acknowledged comes again.
//!
//! What makes a repeated batch harmless is a **guard per key**: beside the data, the store keeps
//! for every key (or member of a sorted set, or field of a hash) the position of the last event
//! applied to it, in the hash `{prefix}:v{N}:__applied` of the projection's version N. Each operation carries the position of the
//! event that queued it ([`ReadStore::applying`](composable::projection::ReadStore::applying),
//! called by the runner before each event), and the script skips it when its key already has
//! that position or a newer one: an event delivered twice adds to a counter once. Operations
//! queued without a position are always applied. The guards rely on the events that change one
//! key arriving in log order: the log gives that; the bus gives it per partition (per stream)
//! only. So a projection that follows the bus
//! ([`ProjectionRunner::from_bus`](composable::projection::ProjectionRunner::from_bus)) guards
//! **streams** instead ([`StreamGuards`](composable::projection::StreamGuards)): the hash
//! `{prefix}:v{N}:__streams` keeps the version of each stream applied, the script applies a
//! batch only when its streams are still at the versions it read, and its operations carry no
//! position — so a key every stream writes (a global counter) counts each event once, in
//! whatever order the streams come.
//!
//! Events a projection parks ([`ReadStore::park`](composable::projection::ReadStore::park)) are
//! kept whole under the same prefix, written by the same script as the rest of their batch. A
//! replay takes each one out in the batch that applies it, and the script refuses the whole
//! batch ([`RedisReadError::Replayed`]) when another replay took it first; such a batch applies
//! its operations whatever the guards say — other streams may have moved a shared key past the
//! parked event since — and only raises the guards.
//!
//! Redis does not roll back a script that fails half way, so the script checks everything first
//! with reads only — the checkpoint, the guards, and that each operation fits what its key holds
//! (a counter on a hash is refused, so is a counter about to overflow) — and writes only once
//! nothing can fail: a refused batch ([`RedisReadError::Conflict`]) changes nothing.
//!
//! Keys: the user's `key` in version N of the projection is `{prefix}:v{N}:{key}` (keys starting
//! with `__` are refused), its guards `{prefix}:v{N}:__applied`; the store's own are
//! `{prefix}:__serving` (the version queries read), `{prefix}:__owner` (the one projection the
//! prefix keeps), `{prefix}:__versions`, `{prefix}:__checkpoint:{name}`,
//! `{prefix}:__claim:{name}`, `{prefix}:__dead:{projection}` and `{prefix}:__parked:{projection}`.
//! Every read is one Lua script that looks the serving version up and reads its key, so a new
//! version builds under its own keys while queries read the old one, and they switch at once
//! when it takes over ([`ReadStore::activate`](composable::projection::ReadStore::activate));
//! the old version's keys are then deleted. The guards of deleted or expired keys stay (so that
//! an old event delivered again cannot bring a key back) until their version is cleared or
//! dropped. Keys, members and values reach Redis as arguments of the scripts, never as part of
//! their source. Positions are kept as text that sorts like them (two 20-digit parts, every
//! `u64` fits).
//!
//! [`RedisCache`] is Redis as the cache of a
//! [`Cached`](composable::projection::Cached) document store (PostgreSQL behind it, say).
//!
//! ```no_run
//! use composable::{event, project, projection};
//! use composable_redis::{RedisBatch, RedisReadError, RedisReadStore};
//! use serde::{Deserialize, Serialize};
//!
//! #[event(name = "game.scored", version = 1)]
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! pub struct Scored { pub player: String, pub points: u32 }
//!
//! /// Points per player, and the games played.
//! struct Leaderboard;
//!
//! #[projection(name = "leaderboard", store = RedisReadStore)]
//! impl Leaderboard {
//!     #[project]
//!     fn scored(&self, batch: &mut RedisBatch, event: &Scored) -> Result<(), RedisReadError> {
//!         batch.zincr_by("points", &event.player, f64::from(event.points))?;
//!         batch.incr_by("games", 1)
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let read = RedisReadStore::connect("redis://127.0.0.1:6379/", "leaderboard").await?;
//! // Hosted with `App::in_process(..).projection(Leaderboard, read.clone())`; then:
//! for (player, points) in read.top("points", 10).await? {
//!     println!("{player}: {points}");
//! }
//! println!("{} games", read.counter("games").await?);
//! # Ok(())
//! # }
//! ```

mod batch;
mod cache;
mod checkpoint;
mod dead_letter;
mod error;
mod keys;
mod store;

pub use batch::RedisBatch;
pub use cache::RedisCache;
pub use checkpoint::RedisCheckpoints;
pub use error::RedisReadError;
pub use store::RedisReadStore;

pub use redis::Client;
/// Re-exported so callers can build a connection without naming the `redis` crate themselves.
pub use redis::aio::{ConnectionManager, ConnectionManagerConfig};
