//! Time, as part of the environment.
//!
//! Reducers read the time and effects wait on it only through a [`Clock`], so tests can replace
//! the [`SystemClock`] with a [`TestClock`] that moves only when the test advances it: delays
//! fire deterministically and tests never sleep.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::oneshot;

/// A source of the current time and of timers.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Completes once `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Wall-clock time and Tokio timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        (**self).sleep(duration)
    }
}

/// A clock that stands still until [`advance`](TestClock::advance)d. Clones share one timeline.
///
/// `advance` lets woken tasks run by yielding to the scheduler, which is deterministic on a
/// current-thread runtime (the default of `#[tokio::test]`); use one wherever a test clock drives
/// effects.
///
/// ```
/// use std::time::Duration;
/// use composable::{Clock, TestClock};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let clock = TestClock::new();
/// let start = clock.now();
/// let timer = tokio::spawn(clock.sleep(Duration::from_secs(60)));
/// clock.advance(Duration::from_secs(59)).await;
/// assert!(!timer.is_finished());
/// clock.advance(Duration::from_secs(1)).await;
/// assert!(timer.is_finished());
/// assert_eq!(clock.now() - start, chrono::Duration::seconds(60));
/// # }
/// ```
#[derive(Clone)]
pub struct TestClock {
    timeline: Arc<Mutex<Timeline>>,
}

struct Timeline {
    now: DateTime<Utc>,
    next_id: u64,
    /// Pending sleeps by (deadline, registration order).
    sleepers: BTreeMap<(DateTime<Utc>, u64), oneshot::Sender<()>>,
}

impl TestClock {
    /// A clock standing at 2026-01-01T00:00:00Z.
    pub fn new() -> Self {
        Self::starting_at(DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default())
    }

    /// A clock standing at `now`.
    pub fn starting_at(now: DateTime<Utc>) -> Self {
        Self {
            timeline: Arc::new(Mutex::new(Timeline { now, next_id: 0, sleepers: BTreeMap::new() })),
        }
    }

    fn timeline(&self) -> MutexGuard<'_, Timeline> {
        self.timeline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many sleeps are waiting for the clock to move (not counting those dropped).
    pub fn pending_sleeps(&self) -> usize {
        self.timeline().sleepers.values().filter(|wake| !wake.is_closed()).count()
    }

    /// Moves time forward by `duration`, waking every sleep that falls due, in deadline order.
    /// After each wake-up the tasks that were woken get to run, so a timer that schedules
    /// another timer inside the window fires too. Tasks that are ready run first, so a timer
    /// an effect is about to set counts from the time before the advance.
    pub async fn advance(&self, duration: Duration) {
        settle().await;
        let step = chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
        let target = self.now().checked_add_signed(step).unwrap_or(DateTime::<Utc>::MAX_UTC);
        loop {
            let due = {
                let mut timeline = self.timeline();
                match timeline.sleepers.first_key_value() {
                    Some((&(deadline, _), _)) if deadline <= target => {
                        timeline.now = timeline.now.max(deadline);
                        timeline.sleepers.pop_first().map(|(_, wake)| wake)
                    }
                    _ => None,
                }
            };
            match due {
                Some(wake) => {
                    // The sleeper may have been dropped (cancelled); that is fine.
                    let _ = wake.send(());
                    settle().await;
                }
                None => break,
            }
        }
        let mut timeline = self.timeline();
        timeline.now = timeline.now.max(target);
    }
}

/// Lets every task that is ready run, a bounded number of scheduler turns.
pub(crate) async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TestClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let timeline = self.timeline();
        f.debug_struct("TestClock")
            .field("now", &timeline.now)
            .field("pending_sleeps", &timeline.sleepers.len())
            .finish()
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        self.timeline().now
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        if duration.is_zero() {
            return Box::pin(std::future::ready(()));
        }
        let (wake, woken) = oneshot::channel();
        {
            let mut timeline = self.timeline();
            let step = chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
            let deadline =
                timeline.now.checked_add_signed(step).unwrap_or(DateTime::<Utc>::MAX_UTC);
            let id = timeline.next_id;
            timeline.next_id += 1;
            // Sleeps dropped unfinished (the losing branch of a `select!`) go, so that a loop
            // racing a sleep against other wake-ups does not pile them up.
            timeline.sleepers.retain(|_, wake| !wake.is_closed());
            timeline.sleepers.insert((deadline, id), wake);
        }
        Box::pin(async move {
            // A dropped clock never wakes this sleep: the timer simply never fires.
            if woken.await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleeps_fire_in_deadline_order_and_only_when_due() {
        let clock = TestClock::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        for (name, secs) in [("late", 3), ("early", 1), ("middle", 2)] {
            let (clock, order) = (clock.clone(), Arc::clone(&order));
            tokio::spawn(async move {
                clock.sleep(Duration::from_secs(secs)).await;
                order.lock().expect("lock").push(name);
            });
        }
        settle().await;
        assert_eq!(clock.pending_sleeps(), 3);
        clock.advance(Duration::from_millis(2500)).await;
        assert_eq!(*order.lock().expect("lock"), ["early", "middle"]);
        clock.advance(Duration::from_millis(500)).await;
        assert_eq!(*order.lock().expect("lock"), ["early", "middle", "late"]);
    }

    #[tokio::test]
    async fn a_timer_set_by_a_timer_fires_within_the_same_advance() {
        let clock = TestClock::new();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let (inner_clock, inner_fired) = (clock.clone(), Arc::clone(&fired));
        tokio::spawn(async move {
            inner_clock.sleep(Duration::from_secs(1)).await;
            inner_fired.lock().expect("lock").push(inner_clock.now());
            inner_clock.sleep(Duration::from_secs(1)).await;
            inner_fired.lock().expect("lock").push(inner_clock.now());
        });
        settle().await;
        let start = clock.now();
        clock.advance(Duration::from_secs(5)).await;
        let fired = fired.lock().expect("lock").clone();
        assert_eq!(
            fired,
            [start + chrono::Duration::seconds(1), start + chrono::Duration::seconds(2)]
        );
        assert_eq!(clock.now(), start + chrono::Duration::seconds(5));
    }

    #[tokio::test]
    async fn a_dropped_sleep_is_not_pending() {
        let clock = TestClock::new();
        let kept = clock.sleep(Duration::from_secs(1));
        drop(clock.sleep(Duration::from_secs(2)));
        assert_eq!(clock.pending_sleeps(), 1);
        for _ in 0..100 {
            tokio::select! {
                biased;
                () = std::future::ready(()) => {}
                () = clock.sleep(Duration::from_secs(3)) => {}
            }
        }
        assert_eq!(clock.pending_sleeps(), 1);
        assert!(clock.timeline().sleepers.len() <= 2, "dropped sleeps are pruned");
        drop(kept);
    }
}
