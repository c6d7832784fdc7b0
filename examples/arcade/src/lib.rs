//! Read models on Redis, kept by projections of a player's events: a **session cache** whose
//! entries expire with a TTL, and a **leaderboard** on a sorted set with a counter of games.
//!
//! [`Player`] is an ordinary aggregate (start a session, score, end it). [`Sessions`] and
//! [`Leaderboard`] are projections, each on a [`RedisReadStore`] of its own prefix: a batch of
//! events is one atomic script with the projection's checkpoint, and every key keeps the
//! position of the last event applied to it, so an event delivered twice never counts twice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use composable::{RecordedEvent, aggregate, apply, command, event, project, projection};
use composable_redis::{RedisBatch, RedisReadError, RedisReadStore};
use serde::{Deserialize, Serialize};

/// How long a session stays cached after it started (a session that ends sooner is removed).
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 60);

/// A player started a session on a device.
#[event(name = "player.session_started", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStarted {
    /// The device.
    pub device: String,
}

/// A player scored in a game.
#[event(name = "player.scored", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Points won.
    pub points: u32,
}

/// A player ended their session.
#[event(name = "player.session_ended", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnded;

/// Start a session.
#[derive(Debug, Clone, PartialEq)]
pub struct StartSession {
    /// On which device.
    pub device: String,
}

/// Record a game's points.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Points won.
    pub points: u32,
}

/// End the session.
#[derive(Debug, Clone, PartialEq)]
pub struct EndSession;

/// Why a player's command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayerError {
    /// Scoring and ending need a session.
    #[error("the player has no session")]
    NoSession,
}

/// A player: whether they have a session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Player {
    /// The device of the open session.
    pub session: Option<String>,
}

#[aggregate(stream = "player")]
impl Player {
    #[command]
    fn start(&self, cmd: StartSession) -> SessionStarted {
        SessionStarted { device: cmd.device }
    }

    #[command]
    fn score(&self, cmd: Score) -> Result<Scored, PlayerError> {
        self.session.as_ref().map(|_| Scored { points: cmd.points }).ok_or(PlayerError::NoSession)
    }

    #[command]
    fn end(&self, _: EndSession) -> Result<SessionEnded, PlayerError> {
        self.session.as_ref().map(|_| SessionEnded).ok_or(PlayerError::NoSession)
    }

    #[apply]
    fn started(&mut self, event: &SessionStarted) {
        self.session = Some(event.device.clone());
    }

    #[apply]
    fn scored(&mut self, _: &Scored) {}

    #[apply]
    fn ended(&mut self, _: &SessionEnded) {
        self.session = None;
    }
}

/// A cached session, as a front end reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The device.
    pub device: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// The session cache: `session:{player}` while a session is open, for [`SESSION_TTL`] after it
/// started at most.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sessions;

/// The cache key of `player`'s session.
pub fn session_key(player: &str) -> String {
    format!("session:{player}")
}

#[projection(name = "arcade_sessions", store = RedisReadStore)]
impl Sessions {
    #[project]
    fn started(
        &self,
        batch: &mut RedisBatch,
        event: &SessionStarted,
        envelope: &RecordedEvent,
    ) -> Result<(), RedisReadError> {
        let started_at = envelope.metadata.occurred_at;
        // The time left counts from when the session started: a rebuild does not bring back
        // sessions that have expired since.
        let age = (Utc::now() - started_at).to_std().unwrap_or_default();
        let key = session_key(envelope.stream_id.id());
        match SESSION_TTL.checked_sub(age) {
            Some(left) if !left.is_zero() => {
                let session = Session { device: event.device.clone(), started_at };
                batch.set_with_ttl(&key, &session, left)
            }
            _ => batch.delete(&key),
        }
    }

    #[project]
    fn ended(
        &self,
        batch: &mut RedisBatch,
        _event: &SessionEnded,
        envelope: &RecordedEvent,
    ) -> Result<(), RedisReadError> {
        batch.delete(&session_key(envelope.stream_id.id()))
    }
}

/// The key of the leaderboard's sorted set: player → points.
pub const POINTS: &str = "points";
/// The key of the counter of games played.
pub const GAMES: &str = "games";

/// The leaderboard: points per player in a sorted set, and the games played.
#[derive(Debug, Clone, Copy, Default)]
pub struct Leaderboard;

#[projection(name = "arcade_leaderboard", store = RedisReadStore)]
impl Leaderboard {
    #[project]
    fn scored(
        &self,
        batch: &mut RedisBatch,
        event: &Scored,
        envelope: &RecordedEvent,
    ) -> Result<(), RedisReadError> {
        batch.zincr_by(POINTS, envelope.stream_id.id(), f64::from(event.points))?;
        batch.incr_by(GAMES, 1)
    }
}

/// The two read models' stores: one prefix each, `{prefix}-sessions` and `{prefix}-board`.
///
/// # Errors
/// A bad prefix, or Redis cannot be reached.
pub async fn read_models(
    redis_url: &str,
    prefix: &str,
) -> Result<(RedisReadStore, RedisReadStore), RedisReadError> {
    let sessions = RedisReadStore::connect(redis_url, &format!("{prefix}-sessions")).await?;
    let board = RedisReadStore::new(sessions.connection().clone(), &format!("{prefix}-board"))?;
    Ok((sessions, board))
}
