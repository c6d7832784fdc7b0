//! The in-memory twin of [`TimerStore`]: the same semantics, one process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Timer, TimerError, TimerStore};

/// A [`TimerStore`] held in memory, for tests and examples: time is whatever `now` the runner
/// passes, so a [`TestClock`](crate::TestClock) drives it. Clones share the timers.
///
/// ```
/// use std::time::Duration;
/// use composable::saga::{InMemoryTimerStore, Timer, TimerStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let timers = InMemoryTimerStore::new();
/// let now = chrono::Utc::now();
/// let timer = Timer {
///     id: uuid::Uuid::now_v7(),
///     saga: "checkout".into(),
///     key: "o1".into(),
///     step: "payment_captured".into(),
///     correlation_id: uuid::Uuid::now_v7(),
///     due_at: now + chrono::Duration::seconds(30),
/// };
/// timers.schedule(timer.clone()).await?;
/// let lease = Duration::from_secs(10);
/// assert!(timers.claim_due("checkout", now, lease, 10).await?.is_empty());
/// let later = now + chrono::Duration::seconds(30);
/// assert_eq!(timers.claim_due("checkout", later, lease, 10).await?, [timer.clone()]);
/// // Leased: not offered again until the lease runs out, unless completed first.
/// assert!(timers.claim_due("checkout", later, lease, 10).await?.is_empty());
/// timers.complete(timer.id).await?;
/// let much_later = later + chrono::Duration::seconds(60);
/// assert!(timers.claim_due("checkout", much_later, lease, 10).await?.is_empty());
/// # Ok::<(), composable::saga::TimerError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct InMemoryTimerStore {
    timers: Arc<Mutex<HashMap<Uuid, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    timer: Timer,
    leased_until: Option<DateTime<Utc>>,
    fired: bool,
}

impl InMemoryTimerStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Timers neither fired nor cancelled, in due order.
    pub fn pending(&self) -> Vec<Timer> {
        let mut pending: Vec<Timer> = self
            .lock()
            .values()
            .filter(|entry| !entry.fired)
            .map(|entry| entry.timer.clone())
            .collect();
        pending.sort_by_key(|timer| (timer.due_at, timer.id));
        pending
    }

    /// A timer map is valid after any panic: every operation is one insert, remove or flag.
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.timers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TimerStore for InMemoryTimerStore {
    async fn schedule(&self, timer: Timer) -> Result<(), TimerError> {
        self.lock().entry(timer.id).or_insert(Entry { timer, leased_until: None, fired: false });
        Ok(())
    }

    async fn cancel(&self, id: Uuid) -> Result<(), TimerError> {
        self.lock().remove(&id);
        Ok(())
    }

    async fn claim_due(
        &self,
        saga: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Timer>, TimerError> {
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let until = now.checked_add_signed(lease).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut timers = self.lock();
        let mut due: Vec<&mut Entry> = timers
            .values_mut()
            .filter(|entry| {
                !entry.fired
                    && entry.timer.saga == saga
                    && entry.timer.due_at <= now
                    && entry.leased_until.is_none_or(|leased| leased <= now)
            })
            .collect();
        due.sort_by_key(|entry| (entry.timer.due_at, entry.timer.id));
        Ok(due
            .into_iter()
            .take(limit)
            .map(|entry| {
                entry.leased_until = Some(until);
                entry.timer.clone()
            })
            .collect())
    }

    async fn complete(&self, id: Uuid) -> Result<(), TimerError> {
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.fired = true;
        }
        Ok(())
    }
}
