//! Back-off: how long to wait between attempts, and how many to make.
//!
//! Every place the library retries — a command that lost a race, a delivery its handler
//! refused, a relay batch the broker did not take, a consumer whose store was unreachable, an
//! append that lost a serialization race — is configured with one [`Backoff`] value, and waits
//! through a [`Clock`], so a [`TestClock`](crate::TestClock) steps through every retry in tests.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use crate::clock::Clock;

/// How long to wait before each attempt of something that may fail, and how many attempts to
/// make: exponential growth from `initial` by `factor`, capped at `max`, with optional jitter.
///
/// Attempts are counted from 1 (the first try, which never waits). The wait before attempt `n ≥
/// 2` is `initial × factor^(n-2)`, at most `max`; with jitter `j`, a random part of up to `j` of
/// it is taken off, so that clients failing together do not retry together.
///
/// ```
/// use std::time::Duration;
/// use composable::backoff::Backoff;
///
/// let backoff = Backoff::exponential(Duration::from_millis(100))
///     .max_delay(Duration::from_millis(350))
///     .attempts(5);
/// let waits: Vec<u128> = (1..=5).map(|n| backoff.delay_before(n).as_millis()).collect();
/// assert_eq!(waits, [0, 100, 200, 350, 350]);
/// assert!(backoff.allows(5) && !backoff.allows(6));
///
/// // No retry at all, and retries with a constant wait, forever.
/// assert!(!Backoff::NONE.allows(2));
/// let steady = Backoff::constant(Duration::from_millis(5));
/// assert_eq!(steady.delay_before(1_000), Duration::from_millis(5));
/// assert!(steady.allows(u32::MAX));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    factor: u32,
    max: Duration,
    jitter: f64,
    attempts: Option<u32>,
}

impl Backoff {
    /// One attempt, no retry.
    pub const NONE: Self = Self {
        initial: Duration::ZERO,
        factor: 1,
        max: Duration::ZERO,
        jitter: 0.0,
        attempts: Some(1),
    };

    /// The usual retry policy of work that leaves the process: waits of 1, 2, 4 and 8 seconds
    /// (2^n), five attempts in all, no jitter.
    ///
    /// ```
    /// use std::time::Duration;
    /// use composable::backoff::Backoff;
    ///
    /// let waits: Vec<u64> = (1..=5).map(|n| Backoff::STANDARD.delay_before(n).as_secs()).collect();
    /// assert_eq!(waits, [0, 1, 2, 4, 8]);
    /// assert!(!Backoff::STANDARD.allows(6));
    /// ```
    pub const STANDARD: Self = Self::exponential(Duration::from_secs(1)).attempts(5);

    /// Waits that double from `initial`, up to 30 s between attempts, with no limit on the
    /// number of attempts and no jitter.
    pub const fn exponential(initial: Duration) -> Self {
        Self { initial, factor: 2, max: Duration::from_secs(30), jitter: 0.0, attempts: None }
    }

    /// The same wait before every retry, with no limit on the number of attempts.
    pub const fn constant(delay: Duration) -> Self {
        Self { initial: delay, factor: 1, max: delay, jitter: 0.0, attempts: None }
    }

    /// Retries at once, up to `attempts` attempts in all.
    pub const fn immediate(attempts: u32) -> Self {
        Self::constant(Duration::ZERO).attempts(attempts)
    }

    /// Multiplies the wait by `factor` for each further attempt (1: constant).
    #[must_use]
    pub const fn factor(mut self, factor: u32) -> Self {
        self.factor = if factor == 0 { 1 } else { factor };
        self
    }

    /// The longest wait between two attempts.
    #[must_use]
    pub const fn max_delay(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Takes a random part of up to `fraction` (0 to 1) off each wait.
    #[must_use]
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
        self
    }

    /// At most `attempts` attempts in all, the first included (at least 1).
    #[must_use]
    pub const fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = Some(if attempts == 0 { 1 } else { attempts });
        self
    }

    /// No limit on the number of attempts.
    #[must_use]
    pub const fn forever(mut self) -> Self {
        self.attempts = None;
        self
    }

    /// The limit on attempts, `None` for none.
    pub const fn max_attempts(&self) -> Option<u32> {
        self.attempts
    }

    /// The wait before the second attempt.
    pub const fn initial_delay(&self) -> Duration {
        self.initial
    }

    /// Whether attempt number `attempt` (from 1) may be made.
    pub const fn allows(&self, attempt: u32) -> bool {
        match self.attempts {
            Some(limit) => attempt <= limit,
            None => true,
        }
    }

    /// The wait before attempt number `attempt`, without jitter: zero for the first.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let growth = self.factor.checked_pow(attempt - 2).unwrap_or(u32::MAX);
        self.initial.saturating_mul(growth).min(self.max)
    }

    /// The wait before attempt number `attempt`, with a random share of the jitter taken off.
    pub fn jittered_delay_before(&self, attempt: u32) -> Duration {
        let delay = self.delay_before(attempt);
        if self.jitter <= 0.0 || delay.is_zero() {
            return delay;
        }
        // Random bits without a dependency: the standard library seeds each `RandomState`
        // afresh. Precision does not matter here; spreading retries apart does.
        let random = RandomState::new().hash_one(attempt);
        #[allow(clippy::cast_precision_loss)]
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        delay.mul_f64(1.0 - self.jitter * unit)
    }

    /// Waits on `clock` for as long as attempt number `attempt` must (jitter included).
    pub async fn wait_before(&self, attempt: u32, clock: &dyn Clock) {
        let delay = self.jittered_delay_before(attempt);
        if !delay.is_zero() {
            clock.sleep(delay).await;
        }
    }

    /// Runs `operation` until it succeeds, it fails with an error `retryable` rejects, or the
    /// attempts run out; waits on `clock` in between. The last error is returned.
    ///
    /// ```
    /// use std::time::Duration;
    /// use composable::TestClock;
    /// use composable::backoff::Backoff;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let clock = TestClock::new();
    /// let backoff = Backoff::exponential(Duration::from_secs(1)).attempts(3);
    /// let mut tries = 0;
    /// let (retried, ()) = tokio::join!(
    ///     backoff.retry(&clock, |_: &&str| true, || {
    ///         tries += 1;
    ///         let outcome = if tries < 3 { Err("not yet") } else { Ok(tries) };
    ///         async move { outcome }
    ///     }),
    ///     clock.advance(Duration::from_secs(3)),
    /// );
    /// assert_eq!(retried, Ok(3));
    /// # }
    /// ```
    pub async fn retry<T, E, F, Fut>(
        &self,
        clock: &dyn Clock,
        retryable: impl Fn(&E) -> bool,
        mut operation: F,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            match operation().await {
                Ok(value) => return Ok(value),
                Err(error) if retryable(&error) && self.allows(attempt + 1) => {
                    attempt += 1;
                    self.wait_before(attempt, clock).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// The consecutive failures of something retried with a [`Backoff`]: how long to wait after
/// each, and when to give up.
///
/// ```
/// use std::time::Duration;
/// use composable::backoff::{Backoff, Failures};
///
/// let mut failures = Failures::new(Backoff::exponential(Duration::from_millis(10)).attempts(3));
/// assert_eq!(failures.failed(), Some(Duration::from_millis(10)));
/// assert_eq!(failures.failed(), Some(Duration::from_millis(20)));
/// assert_eq!(failures.failed(), None, "a fourth attempt is not allowed");
/// failures.succeeded();
/// assert_eq!(failures.count(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failures {
    backoff: Backoff,
    count: u32,
}

impl Failures {
    /// No failure yet.
    pub const fn new(backoff: Backoff) -> Self {
        Self { backoff, count: 0 }
    }

    /// One more failure: the wait (jitter included) before the next attempt, or `None` when the
    /// back-off allows no further attempt.
    pub fn failed(&mut self) -> Option<Duration> {
        self.count = self.count.saturating_add(1);
        let next = self.count.saturating_add(1);
        self.backoff.allows(next).then(|| self.backoff.jittered_delay_before(next))
    }

    /// An attempt succeeded: the next failure waits the shortest time again.
    pub fn succeeded(&mut self) {
        self.count = 0;
    }

    /// The failures since the last success.
    pub const fn count(&self) -> u32 {
        self.count
    }
}

impl Default for Backoff {
    /// 100 ms doubling up to 30 s, with a fifth of jitter, without a limit on attempts.
    fn default() -> Self {
        Self::exponential(Duration::from_millis(100)).jitter(0.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TestClock;

    #[test]
    fn waits_grow_by_the_factor_and_stop_at_the_cap() {
        let backoff = Backoff::exponential(Duration::from_millis(10))
            .factor(3)
            .max_delay(Duration::from_millis(100));
        let waits: Vec<u128> = (1..=6).map(|n| backoff.delay_before(n).as_millis()).collect();
        assert_eq!(waits, [0, 10, 30, 90, 100, 100]);
        assert_eq!(backoff.delay_before(u32::MAX), Duration::from_millis(100));
    }

    #[test]
    fn jitter_only_shortens_a_wait_and_by_at_most_its_share() {
        let backoff = Backoff::constant(Duration::from_millis(1000)).jitter(0.5);
        let waits: Vec<Duration> = (2..200).map(|n| backoff.jittered_delay_before(n)).collect();
        assert!(waits.iter().all(|wait| *wait <= Duration::from_millis(1000)));
        assert!(waits.iter().all(|wait| *wait >= Duration::from_millis(500)));
        assert!(waits.iter().any(|wait| *wait != waits[0]), "jitter varies the waits");
        assert_eq!(backoff.jitter(f64::NAN).jittered_delay_before(2), Duration::from_secs(1));
    }

    #[test]
    fn attempts_are_counted_from_one_and_zero_means_one() {
        assert!(Backoff::NONE.allows(1));
        assert!(!Backoff::NONE.allows(2));
        assert_eq!(Backoff::immediate(0).max_attempts(), Some(1));
        assert!(Backoff::immediate(3).allows(3) && !Backoff::immediate(3).allows(4));
        assert_eq!(Backoff::immediate(3).forever().max_attempts(), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn retry_waits_on_the_clock_and_returns_the_last_error() {
        let clock = TestClock::new();
        let backoff = Backoff::exponential(Duration::from_secs(10)).attempts(3);
        let task = tokio::spawn({
            let clock = clock.clone();
            async move {
                let mut tries = 0;
                let outcome: Result<(), u32> = backoff
                    .retry(
                        &clock,
                        |_| true,
                        || {
                            tries += 1;
                            let failed = tries;
                            async move { Err(failed) }
                        },
                    )
                    .await;
                outcome
            }
        });
        clock.advance(Duration::from_secs(9)).await;
        assert!(!task.is_finished(), "the second attempt waits 10 s");
        clock.advance(Duration::from_secs(1 + 20)).await;
        assert_eq!(task.await.unwrap(), Err(3));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_error_that_is_not_retryable_ends_at_once() {
        let backoff = Backoff::exponential(Duration::from_secs(3600));
        let mut tries = 0;
        let outcome: Result<(), &str> = backoff
            .retry(
                &crate::clock::SystemClock,
                |error| *error != "fatal",
                || {
                    tries += 1;
                    async { Err("fatal") }
                },
            )
            .await;
        assert_eq!((outcome, tries), (Err("fatal"), 1));
    }
}
