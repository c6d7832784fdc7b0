//! The in-memory twin of the checkpoint store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{CheckpointError, CheckpointStore};
use crate::stream::Position;

/// A [`CheckpointStore`] in memory; clones share the checkpoints.
///
/// ```
/// use composable::checkpoint::{CheckpointStore, InMemoryCheckpointStore};
/// use composable::Position;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let checkpoints = InMemoryCheckpointStore::new();
/// assert_eq!(checkpoints.load("relay").await?, Position::START);
/// checkpoints.save("relay", Position::new(7, 42)).await?;
/// assert_eq!(checkpoints.load("relay").await?, Position::new(7, 42));
/// # Ok::<(), composable::checkpoint::CheckpointError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct InMemoryCheckpointStore {
    positions: Arc<Mutex<HashMap<String, Position>>>,
    /// Who holds each claim, and until when.
    claims: Arc<Mutex<HashMap<String, (Uuid, Instant)>>>,
}

impl InMemoryCheckpointStore {
    /// No checkpoints.
    pub fn new() -> Self {
        Self::default()
    }
}

impl CheckpointStore for InMemoryCheckpointStore {
    async fn load(&self, name: &str) -> Result<Position, CheckpointError> {
        let positions = self.positions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(positions.get(name).copied().unwrap_or(Position::START))
    }

    async fn save(&self, name: &str, position: Position) -> Result<(), CheckpointError> {
        let mut positions =
            self.positions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        positions.insert(name.to_owned(), position);
        Ok(())
    }

    async fn claim(
        &self,
        name: &str,
        holder: Uuid,
        ttl: Duration,
    ) -> Result<bool, CheckpointError> {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match claims.get(name) {
            Some(&(other, until)) if other != holder && until > now => Ok(false),
            _ => {
                claims.insert(name.to_owned(), (holder, now + ttl));
                Ok(true)
            }
        }
    }

    async fn release(&self, name: &str, holder: Uuid) -> Result<(), CheckpointError> {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        if claims.get(name).is_some_and(|&(other, _)| other == holder) {
            claims.remove(name);
        }
        Ok(())
    }
}
