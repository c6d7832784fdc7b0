//! Checkpoints: how far a consumer of the global log got, by name.
//!
//! Every [log consumer](crate::consumer::LogConsumer) — the relay, a saga's input, a projection —
//! saves the position of the last event it handled under its name, and resumes after it when it
//! starts again. [`CheckpointStore`] is the port; [`InMemoryCheckpointStore`] its twin beside
//! it, `composable-postgres` the durable one.

mod memory;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use uuid::Uuid;

use crate::BoxError;
use crate::stream::Position;

pub use memory::InMemoryCheckpointStore;

/// A checkpoint could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The store could not be reached; retrying may succeed.
    #[error("checkpoint store unavailable while trying to {operation} `{name}`: {source}")]
    Unavailable {
        /// What was being done.
        operation: &'static str,
        /// The checkpoint's name.
        name: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// A stored checkpoint cannot be read back.
    #[error("checkpoint `{name}` is corrupt: {reason}")]
    Corrupt {
        /// The checkpoint's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store failed in a way retrying will not fix.
    #[error("checkpoint store failed to {operation} `{name}`: {source}")]
    Backend {
        /// What was being done.
        operation: &'static str,
        /// The checkpoint's name.
        name: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

/// Durable positions in the global log, by name: how far a relay (or a projection) got.
///
/// Implemented by [`InMemoryCheckpointStore`] and by `composable-postgres`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a checkpoint store",
    note = "use `composable::checkpoint::InMemoryCheckpointStore` in tests, or \
            `composable_postgres::PostgresCheckpointStore`"
)]
pub trait CheckpointStore: Send + Sync + 'static {
    /// The saved position of `name`, [`Position::START`] when none was saved.
    fn load(&self, name: &str) -> impl Future<Output = Result<Position, CheckpointError>> + Send;

    /// Saves `position` as `name`'s checkpoint.
    fn save(
        &self,
        name: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), CheckpointError>> + Send;

    /// Claims the work behind checkpoint `name` for `holder` until `ttl` from now, or renews the
    /// claim `holder` has: `true` when `holder` holds it now. A claim its holder did not renew
    /// within its `ttl` may be taken by another holder. What a consumer run in several
    /// processes uses so that one of them does the work and the others stand by.
    fn claim(
        &self,
        name: &str,
        holder: Uuid,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, CheckpointError>> + Send;

    /// Gives up `holder`'s claim on `name`; nothing when it does not hold it.
    fn release(
        &self,
        name: &str,
        holder: Uuid,
    ) -> impl Future<Output = Result<(), CheckpointError>> + Send;
}

impl CheckpointError {
    /// Whether trying again may succeed: the store was unreachable.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Any [`CheckpointStore`] behind a shared pointer, so that the types holding it need not name
/// it: what [`SagaRunner`](crate::SagaRunner) and the [host](crate::host) keep. Clones share the
/// store.
///
/// ```
/// use composable::checkpoint::{CheckpointStore, InMemoryCheckpointStore, SharedCheckpoints};
/// use composable::Position;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let shared = SharedCheckpoints::new(InMemoryCheckpointStore::new());
/// shared.clone().save("relay", Position::new(1, 1)).await?;
/// assert_eq!(shared.load("relay").await?, Position::new(1, 1));
/// # Ok::<(), composable::checkpoint::CheckpointError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct SharedCheckpoints(Arc<dyn ErasedCheckpoints>);

impl SharedCheckpoints {
    /// `checkpoints`, shared.
    pub fn new(checkpoints: impl CheckpointStore) -> Self {
        Self(Arc::new(checkpoints))
    }
}

impl fmt::Debug for SharedCheckpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedCheckpoints")
    }
}

trait ErasedCheckpoints: Send + Sync {
    fn load<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Position, CheckpointError>>;
    fn save<'a>(
        &'a self,
        name: &'a str,
        position: Position,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;
    fn claim<'a>(
        &'a self,
        name: &'a str,
        holder: Uuid,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>>;
    fn release<'a>(
        &'a self,
        name: &'a str,
        holder: Uuid,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;
}

impl<K: CheckpointStore> ErasedCheckpoints for K {
    fn load<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Position, CheckpointError>> {
        Box::pin(CheckpointStore::load(self, name))
    }

    fn save<'a>(
        &'a self,
        name: &'a str,
        position: Position,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(CheckpointStore::save(self, name, position))
    }

    fn claim<'a>(
        &'a self,
        name: &'a str,
        holder: Uuid,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        Box::pin(CheckpointStore::claim(self, name, holder, ttl))
    }

    fn release<'a>(
        &'a self,
        name: &'a str,
        holder: Uuid,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(CheckpointStore::release(self, name, holder))
    }
}

impl CheckpointStore for SharedCheckpoints {
    async fn load(&self, name: &str) -> Result<Position, CheckpointError> {
        self.0.load(name).await
    }

    async fn save(&self, name: &str, position: Position) -> Result<(), CheckpointError> {
        self.0.save(name, position).await
    }

    async fn claim(
        &self,
        name: &str,
        holder: Uuid,
        ttl: Duration,
    ) -> Result<bool, CheckpointError> {
        self.0.claim(name, holder, ttl).await
    }

    async fn release(&self, name: &str, holder: Uuid) -> Result<(), CheckpointError> {
        self.0.release(name, holder).await
    }
}

impl<K: CheckpointStore> CheckpointStore for Arc<K> {
    fn load(&self, name: &str) -> impl Future<Output = Result<Position, CheckpointError>> + Send {
        (**self).load(name)
    }

    fn save(
        &self,
        name: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), CheckpointError>> + Send {
        (**self).save(name, position)
    }

    fn claim(
        &self,
        name: &str,
        holder: Uuid,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, CheckpointError>> + Send {
        (**self).claim(name, holder, ttl)
    }

    fn release(
        &self,
        name: &str,
        holder: Uuid,
    ) -> impl Future<Output = Result<(), CheckpointError>> + Send {
        (**self).release(name, holder)
    }
}
