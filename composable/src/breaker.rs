//! A circuit breaker for calls that leave the process: after too many of them fail, it refuses
//! the next ones at once for a while, instead of letting each wait for its own timeout against a
//! system that is down.
//!
//! Its states, on the breaker's [`Clock`] (a [`TestClock`](crate::TestClock) steps through them
//! in tests):
//!
//! * **closed**: calls go through; the outcomes of the last [`BreakerPolicy::window`] calls are
//!   kept, and once the window is full and the share of failures in it reaches
//!   [`BreakerPolicy::failure_rate`], the breaker opens;
//! * **open**: calls are refused with [`BreakerError::Open`] without being made, for
//!   [`BreakerPolicy::open_for`];
//! * **half-open**: then up to [`BreakerPolicy::probes`] calls at a time go through as probes; a
//!   probe that succeeds closes the breaker (with an empty window), one that fails opens it again.
//!
//! The defaults are the roadmap's: open at a 50% error rate over 10 calls, half-open after 30 s,
//! one probe. Its state is the gauge [`metrics::CIRCUIT_BREAKER_STATE`].
//!
//! ```
//! use std::time::Duration;
//! use composable::TestClock;
//! use composable::breaker::{BreakerError, BreakerPolicy, BreakerState, CircuitBreaker};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let clock = TestClock::new();
//! let payments = CircuitBreaker::new("payments", BreakerPolicy::default().window(4))
//!     .with_clock(clock.clone());
//! for _ in 0..4 {
//!     let _ = payments.call(async { Err::<(), _>("gateway timeout") }).await;
//! }
//! assert_eq!(payments.state(), BreakerState::Open);
//! let refused = payments.call(async { Ok::<_, &str>(()) }).await;
//! assert!(matches!(refused, Err(BreakerError::Open { .. })));
//!
//! clock.advance(Duration::from_secs(30)).await;
//! assert_eq!(payments.state(), BreakerState::HalfOpen);
//! payments.call(async { Ok::<_, &str>(()) }).await?;
//! assert_eq!(payments.state(), BreakerState::Closed);
//! # Ok::<(), BreakerError<&str>>(())
//! # }).unwrap();
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::{Clock, SystemClock};
use crate::metrics;

/// When a [`CircuitBreaker`] opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    window: usize,
    failure_rate: f64,
    open_for: Duration,
    probes: usize,
}

impl Default for BreakerPolicy {
    /// Open at a 50% error rate over the last 10 calls, half-open after 30 s, one probe.
    fn default() -> Self {
        Self { window: 10, failure_rate: 0.5, open_for: Duration::from_secs(30), probes: 1 }
    }
}

impl BreakerPolicy {
    /// How many of the latest calls the error rate is taken over (at least 1); the breaker
    /// does not open before it has seen that many.
    #[must_use]
    pub fn window(mut self, calls: usize) -> Self {
        self.window = calls.max(1);
        self
    }

    /// The share of failed calls in the window (0 to 1) at which the breaker opens.
    #[must_use]
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate.clamp(0.0, 1.0);
        self
    }

    /// How long the breaker stays open before it lets probes through.
    #[must_use]
    pub fn open_for(mut self, duration: Duration) -> Self {
        self.open_for = duration;
        self
    }

    /// How many probes may be in flight at once while half-open (at least 1).
    #[must_use]
    pub fn probes(mut self, probes: usize) -> Self {
        self.probes = probes.max(1);
        self
    }
}

/// Where a [`CircuitBreaker`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused.
    Open,
    /// Probes go through, one failure away from open and one success from closed.
    HalfOpen,
}

impl BreakerState {
    /// The state as a label: `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call through a [`CircuitBreaker`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    /// The breaker is open (or its probes are all in flight): the call was not made. Try again
    /// after `retry_after`.
    #[error(
        "circuit breaker `{breaker}` is open: the call was not made; try again in {retry_after:?}"
    )]
    Open {
        /// The breaker's name.
        breaker: String,
        /// How long until it lets a probe through.
        retry_after: Duration,
    },
    /// The call was made and failed.
    #[error(transparent)]
    Failed(E),
}

/// Trips after too many failures and refuses calls for a while: see the [module docs](self).
/// Clones share one state.
#[derive(Clone)]
pub struct CircuitBreaker {
    name: Arc<str>,
    policy: BreakerPolicy,
    clock: Arc<dyn Clock>,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    state: Phase,
    /// The latest outcomes while closed: `true` for a failure.
    outcomes: VecDeque<bool>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: DateTime<Utc> },
    HalfOpen { in_flight: usize },
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .field("state", &self.state())
            .finish()
    }
}

/// What a call was let through as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admitted {
    Call,
    Probe,
}

impl CircuitBreaker {
    /// A closed breaker called `name` (its metrics label), on the system clock.
    pub fn new(name: impl Into<String>, policy: BreakerPolicy) -> Self {
        let breaker = Self {
            name: Arc::from(name.into()),
            policy,
            clock: Arc::new(SystemClock),
            inner: Arc::new(Mutex::new(Inner {
                state: Phase::Closed,
                outcomes: VecDeque::with_capacity(policy.window),
            })),
        };
        metrics::breaker_state(&breaker.name, BreakerState::Closed.as_str(), 0.0, false);
        breaker
    }

    /// Keeps time on `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its policy.
    pub fn policy(&self) -> &BreakerPolicy {
        &self.policy
    }

    /// Where it is now: an open breaker whose time is up is half-open.
    pub fn state(&self) -> BreakerState {
        let mut inner = self.inner();
        self.expire(&mut inner);
        match inner.state {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Makes the call `call` when the breaker lets it through, and counts a failure when it
    /// returns an error.
    ///
    /// # Errors
    /// [`BreakerError::Open`] without calling, or the call's own error.
    pub async fn call<T, E, F>(&self, call: F) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_counting(call, |_| true).await
    }

    /// As [`call`](Self::call), counting an error as a failure only when `counts` says so: a
    /// refusal by the other system (a rejected command, a 4xx) says nothing about its health.
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub async fn call_counting<T, E, F>(
        &self,
        call: F,
        counts: impl FnOnce(&E) -> bool,
    ) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let admitted = self.admit()?;
        // A call dropped before it ends frees its probe without deciding anything.
        let mut guard = Unreported { breaker: self, admitted, reported: false };
        let result = call.await;
        let failed = result.as_ref().err().is_some_and(counts);
        guard.reported = true;
        self.report(admitted, failed);
        result.map_err(BreakerError::Failed)
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An open breaker whose time is up becomes half-open.
    fn expire(&self, inner: &mut Inner) {
        if let Phase::Open { until } = inner.state
            && self.clock.now() >= until
        {
            self.enter(inner, Phase::HalfOpen { in_flight: 0 });
        }
    }

    fn enter(&self, inner: &mut Inner, phase: Phase) {
        inner.state = phase;
        let (state, value) = match phase {
            Phase::Closed => (BreakerState::Closed, 0.0),
            Phase::HalfOpen { .. } => (BreakerState::HalfOpen, 1.0),
            Phase::Open { .. } => (BreakerState::Open, 2.0),
        };
        tracing::info!(breaker = %self.name, %state, "circuit breaker state changed");
        metrics::breaker_state(&self.name, state.as_str(), value, true);
    }

    fn admit<E>(&self) -> Result<Admitted, BreakerError<E>> {
        let mut inner = self.inner();
        self.expire(&mut inner);
        match inner.state {
            Phase::Closed => Ok(Admitted::Call),
            Phase::HalfOpen { in_flight } if in_flight < self.policy.probes => {
                inner.state = Phase::HalfOpen { in_flight: in_flight + 1 };
                Ok(Admitted::Probe)
            }
            Phase::HalfOpen { .. } => Err(self.refused(Duration::ZERO)),
            Phase::Open { until } => {
                Err(self.refused((until - self.clock.now()).to_std().unwrap_or_default()))
            }
        }
    }

    fn refused<E>(&self, retry_after: Duration) -> BreakerError<E> {
        metrics::breaker_refused(&self.name);
        BreakerError::Open { breaker: self.name.to_string(), retry_after }
    }

    fn report(&self, admitted: Admitted, failed: bool) {
        let mut inner = self.inner();
        let open = || Phase::Open { until: self.clock.now() + self.policy.open_for };
        match (admitted, inner.state) {
            (Admitted::Probe, Phase::HalfOpen { .. }) if failed => self.enter(&mut inner, open()),
            (Admitted::Probe, Phase::HalfOpen { .. }) => {
                inner.outcomes.clear();
                self.enter(&mut inner, Phase::Closed);
            }
            (Admitted::Call, Phase::Closed) => {
                if inner.outcomes.len() == self.policy.window {
                    inner.outcomes.pop_front();
                }
                inner.outcomes.push_back(failed);
                let failures = inner.outcomes.iter().filter(|failed| **failed).count();
                let full = inner.outcomes.len() == self.policy.window;
                #[allow(clippy::cast_precision_loss)] // Windows are far below 2^52 calls.
                let rate = failures as f64 / inner.outcomes.len() as f64;
                if failed && full && rate >= self.policy.failure_rate {
                    inner.outcomes.clear();
                    self.enter(&mut inner, open());
                }
            }
            // A call let through before the state changed: its outcome is of the old state.
            _ => {}
        }
    }

    fn unreported(&self, admitted: Admitted) {
        let mut inner = self.inner();
        if admitted == Admitted::Probe
            && let Phase::HalfOpen { in_flight } = inner.state
        {
            inner.state = Phase::HalfOpen { in_flight: in_flight.saturating_sub(1) };
        }
    }
}

/// Frees a probe whose call was dropped before it ended.
struct Unreported<'a> {
    breaker: &'a CircuitBreaker,
    admitted: Admitted,
    reported: bool,
}

impl Drop for Unreported<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.unreported(self.admitted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestClock;

    async fn fail(breaker: &CircuitBreaker) -> Result<(), BreakerError<&'static str>> {
        breaker.call(async { Err("down") }).await
    }

    async fn succeed(breaker: &CircuitBreaker) -> Result<(), BreakerError<&'static str>> {
        breaker.call(async { Ok(()) }).await
    }

    fn breaker(clock: &TestClock) -> CircuitBreaker {
        CircuitBreaker::new("test", BreakerPolicy::default()).with_clock(clock.clone())
    }

    #[tokio::test]
    async fn it_goes_closed_open_half_open_closed_on_the_clock() {
        let clock = TestClock::new();
        let breaker = breaker(&clock);
        // Half of the last ten failed: the tenth call opens it.
        for _ in 0..5 {
            succeed(&breaker).await.expect("closed");
            assert!(matches!(fail(&breaker).await, Err(BreakerError::Failed("down"))));
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        let refused = succeed(&breaker).await.expect_err("open");
        assert!(
            matches!(refused, BreakerError::Open { retry_after, .. } if retry_after == Duration::from_secs(30))
        );

        clock.advance(Duration::from_secs(29)).await;
        assert_eq!(breaker.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(1)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        succeed(&breaker).await.expect("the probe");
        assert_eq!(breaker.state(), BreakerState::Closed);
        // With an empty window: one failure does not open it again.
        fail(&breaker).await.expect_err("failed");
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn a_failed_probe_opens_it_again_for_another_period() {
        let clock = TestClock::new();
        let breaker = breaker(&clock);
        for _ in 0..10 {
            fail(&breaker).await.expect_err("failed");
        }
        clock.advance(Duration::from_secs(30)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        fail(&breaker).await.expect_err("the probe fails");
        assert_eq!(breaker.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(29)).await;
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[tokio::test]
    async fn it_waits_for_a_full_window_and_below_the_rate_stays_closed() {
        let clock = TestClock::new();
        let breaker = breaker(&clock);
        for _ in 0..9 {
            fail(&breaker).await.expect_err("failed");
        }
        assert_eq!(breaker.state(), BreakerState::Closed, "nine calls are not a window");
        // Rolling: six successes push six failures out; 4 of 10 failed is below 50%.
        for _ in 0..6 {
            succeed(&breaker).await.expect("closed");
        }
        fail(&breaker).await.expect_err("failed");
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn only_the_probes_go_through_while_half_open_and_errors_it_is_told_to_ignore_do_not_count()
     {
        let clock = TestClock::new();
        let breaker = breaker(&clock);
        for _ in 0..10 {
            let refused = breaker.call_counting(async { Err::<(), _>("rejected") }, |_| false);
            refused.await.expect_err("refused by the other side");
        }
        assert_eq!(breaker.state(), BreakerState::Closed, "refusals say nothing of its health");
        for _ in 0..10 {
            fail(&breaker).await.expect_err("failed");
        }
        clock.advance(Duration::from_secs(30)).await;
        let (probe_tx, probe_rx) = tokio::sync::oneshot::channel::<()>();
        let probe = breaker.call(async {
            probe_rx.await.map_err(|_| "cancelled")?;
            Ok::<_, &str>(())
        });
        let second = async {
            tokio::task::yield_now().await;
            let refused = succeed(&breaker).await;
            probe_tx.send(()).expect("the probe waits");
            refused
        };
        let (probe, second) = tokio::join!(probe, second);
        probe.expect("the probe went through");
        assert!(matches!(second, Err(BreakerError::Open { .. })), "one probe at a time");
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
