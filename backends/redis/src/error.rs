//! Why the Redis read store failed, and which Redis errors are worth retrying.

use composable::checkpoint::CheckpointError;
use composable::codec::CodecError;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Why the Redis read store failed. Keys in it are the Redis keys, prefix included, as
/// `redis-cli` shows them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisReadError {
    /// A command or the commit script failed; `transient` says whether Redis could not be
    /// reached (connection refused or dropped, I/O, a timeout, the server loading its data),
    /// so that the same operation may succeed later, rather than refusing it.
    #[error("redis read store: {operation} failed: {source}")]
    Redis {
        /// What was being done.
        operation: &'static str,
        /// Whether the same operation may succeed later.
        transient: bool,
        /// What the client or the server said.
        #[source]
        source: RedisError,
    },
    /// A key prefix must be 1 to 64 characters of `a-z`, `0-9`, `_`, `.`, `:` and `-`.
    #[error("`{0}` is not a key prefix: use 1 to 64 characters of a-z, 0-9, `_`, `.`, `:` and `-`")]
    InvalidPrefix(String),
    /// A key must not be empty, and keys starting with `__` are the store's own (guards,
    /// checkpoints, claims).
    #[error("`{key}` is not a key of the read model: {reason}")]
    InvalidKey {
        /// The key, relative to the prefix.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A checkpoint name must be 1 to 256 bytes without control characters.
    #[error("`{0}` is not a checkpoint name: use 1 to 256 bytes without control characters")]
    InvalidName(String),
    /// A sorted set's score must be a finite number (Redis refuses NaN, and an infinite
    /// increment can make one).
    #[error("`{key}`: the score {score} of `{member}` is not a finite number")]
    InvalidScore {
        /// The sorted set.
        key: String,
        /// The member.
        member: String,
        /// The score.
        score: f64,
    },
    /// A value could not be encoded or decoded.
    #[error("`{key}`: {source}")]
    Codec {
        /// Where the value is (a hash's field after a space).
        key: String,
        /// What the codec said.
        #[source]
        source: CodecError,
    },
    /// What the store keeps beside the data (a guard, a checkpoint) or a counter cannot be
    /// read back.
    #[error("`{key}` is corrupt: {reason}")]
    Corrupt {
        /// Where it is (a hash's field after a space).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An operation of a batch does not fit what its key holds (a counter on a hash, a
    /// counter leaving the range of a 64-bit integer): the commit was refused and nothing of
    /// the batch was applied.
    #[error("nothing of the batch was applied: {operation} on `{key}` is refused: {reason}")]
    Conflict {
        /// The operation (`incr_by`, `hset`, ...).
        operation: &'static str,
        /// Its key.
        key: String,
        /// Why the script refused it.
        reason: String,
    },
    /// A replay of dead letters found one of them gone: another replay took it, so this one
    /// applied nothing.
    #[error("a dead letter being replayed was taken by another replay: nothing was applied")]
    Replayed,
    /// A prefix keeps the versions of one projection; another one wrote here first.
    #[error(
        "prefix `{prefix}` keeps the read model of projection `{owner}`, not `{projection}`: \
         give each projection a store with its own prefix"
    )]
    SharedPrefix {
        /// The prefix.
        prefix: String,
        /// The projection that owns it.
        owner: String,
        /// The one refused.
        projection: String,
    },
}

impl RedisReadError {
    /// Whether trying again may succeed: Redis could not be reached.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Redis { transient: true, .. })
    }

    pub(crate) fn into_checkpoint_error(
        self,
        operation: &'static str,
        name: &str,
    ) -> CheckpointError {
        match self {
            Self::Corrupt { key, reason } => CheckpointError::Corrupt {
                name: name.to_owned(),
                reason: format!("`{key}`: {reason}"),
            },
            error if error.is_transient() => CheckpointError::Unavailable {
                operation,
                name: name.to_owned(),
                source: Box::new(error),
            },
            error => CheckpointError::Backend {
                operation,
                name: name.to_owned(),
                source: Box::new(error),
            },
        }
    }
}

/// Whether `error` means Redis could not be reached or the connection was lost, so the same
/// operation may succeed later.
pub(crate) fn is_transient(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
            )
        )
        // Another client's script is running too long: this one may run once it is done.
        || error.code() == Some("BUSY")
}

/// Maps a Redis error met while doing `operation`.
pub(crate) fn failed(operation: &'static str) -> impl FnOnce(RedisError) -> RedisReadError {
    move |source| RedisReadError::Redis { operation, transient: is_transient(&source), source }
}
